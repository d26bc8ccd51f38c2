"""heavy_imports: TensorFlow without its eager extras, imports without GC churn."""

import gc
import subprocess
import sys
import textwrap

import pytest

from prodml.components.common.heavy_imports import frozen_imports


def test_frozen_imports_restores_the_collector_and_freezes_what_exists():
    before = gc.get_freeze_count()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            with frozen_imports():
                assert not gc.isenabled()
                kept = [[] for _ in range(1000)]
            assert gc.isenabled() is enabled
            assert gc.get_freeze_count() >= before + len(kept)
    finally:
        gc.enable()
        gc.unfreeze()


@pytest.mark.slow  # imports TensorFlow and Keras in a fresh interpreter
def test_tensorflow_imports_without_keras_which_still_imports_afterwards(trained):
    code = textwrap.dedent(f"""
        import gc, sys
        from prodml.components.common.heavy_imports import import_tensorflow
        tf = import_tensorflow()
        assert import_tensorflow() is tf and gc.isenabled()
        assert gc.get_freeze_count() > 100_000, gc.get_freeze_count()
        skipped = [m for m in ("keras", "sklearn", "googleapiclient") if m in sys.modules]
        assert not skipped, skipped
        loaded = tf.saved_model.load({str(trained)!r})
        out = loaded.signatures["serving_default"](**{{
            name: tf.constant([""] if spec.dtype == tf.string else [float("nan")], dtype=spec.dtype)
            for name, spec in loaded.signatures["serving_default"].structured_input_signature[1].items()}})
        assert out["predictions"].shape[0] == 1
        import keras
        import keras.src.optimizers
        assert keras.optimizers.Adam is not None
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
