"""One loaded model version: the SavedModel's raw-feature signature, called with little overhead.

The signature (``serving_default``) takes one ``[None]`` tensor per raw feature: ``float64`` for
INT features, ``float32`` for FLOAT, ``string`` for BYTES, with ``NaN`` / ``""`` for a missing
value. The input specs are read from the signature itself, so the server validates requests
against exactly what the model accepts.
"""

import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from prodml.components.common import artifacts, dataio, keys
from prodml.components.common.errors import ConfigError
from prodml.components.common.logs import get_logger

logger = get_logger(__name__)

# Signature dtype name -> (raw feature kind, V2 datatype, numpy dtype of the column).
_DTYPES = {
    "float64": (keys.INT, "FP64", np.float64),
    "float32": (keys.FLOAT, "FP32", np.float32),
    "string": (keys.BYTES, "BYTES", np.object_),
}


@dataclass(frozen=True)
class FeatureSpec:
    """One raw input of the signature."""

    name: str
    kind: str          # INT, FLOAT or BYTES
    datatype: str      # V2 datatype the signature takes: FP64, FP32 or BYTES
    np_dtype: type     # numpy dtype of the column handed to the signature


class ModelVersion:
    """A SavedModel version loaded for serving.

    ``predict(columns)`` takes one 1-D numpy array per feature (all the same length, dtypes as
    in ``features``) and returns the ``predictions`` array (``[n]`` or ``[n, n_classes]``).
    """

    def __init__(self, path: str, version: int):
        from prodml.serving.quiet_tf import import_tensorflow

        tf = import_tensorflow()
        self.path = path
        self.version = version
        if not is_saved_model(path):
            raise ConfigError(f"{path} is not a SavedModel folder: it has no saved_model.pb. Point --registry at "
                              "a registry root, or --model_dir at a model's folder of versions or one SavedModel.")
        self._loaded = tf.saved_model.load(path)
        if keys.RAW_SIGNATURE not in self._loaded.signatures:
            raise ConfigError(f"The SavedModel at {path} has no '{keys.RAW_SIGNATURE}' signature "
                              f"(it has {sorted(self._loaded.signatures)}). Export it with the prodml trainer.")
        self._fn = self._loaded.signatures[keys.RAW_SIGNATURE]
        self.features = _feature_specs(self._fn, path)
        outputs = self._fn.structured_outputs
        if keys.PREDICTIONS not in outputs:
            raise ConfigError(f"The '{keys.RAW_SIGNATURE}' signature of {path} has no '{keys.PREDICTIONS}' "
                              f"output (it has {sorted(outputs)}).")
        out_spec = outputs[keys.PREDICTIONS]
        self.output_datatype = _DTYPES.get(out_spec.dtype.name, (None, "FP32", None))[1]
        self.output_shape = [-1 if d is None else int(d) for d in out_spec.shape.as_list()]
        self.info = _read_model_info(path)
        self._tf = tf
        self._order: List[str] = list(self._fn._arg_keywords or sorted(self.features))
        self._flat = None

    @property
    def examples_signature(self):
        """The ``serving_examples`` signature (serialized ``tf.Example``), or None."""
        return self._loaded.signatures.get(keys.EXAMPLES_SIGNATURE)

    def predict(self, columns: Dict[str, np.ndarray]) -> np.ndarray:
        """Runs the raw-feature signature on one batch of columns."""
        tensors = [self._tf.constant(columns[name]) for name in self._order]
        if self._flat is not None:
            return self._flat(tensors)
        return self._fn(**dict(zip(self._order, tensors)))[keys.PREDICTIONS].numpy()

    def warm_up(self, max_batch_size: int) -> float:
        """Traces and runs the graph on all-missing rows; enables the flat call if it agrees.

        Returns the seconds it took. The flat call skips the structured-signature binding of
        every call (about half of the per-call overhead on small models); it is used only after
        giving the same predictions as the signature on the warm-up batch.
        """
        start = time.perf_counter()
        batch = self.missing_rows(max(1, max_batch_size))
        expected = self.predict(batch)
        self._flat = self._make_flat_call()
        if self._flat is not None:
            try:
                got = self.predict(batch)
                if got.shape != expected.shape or not np.allclose(got, expected, equal_nan=True):
                    raise ValueError("flat call disagrees with the signature")
            except Exception as e:  # noqa: BLE001 - any failure means: keep the public call path
                logger.info("version %s: direct graph call unavailable (%s); using the signature call",
                            self.version, e)
                self._flat = None
        for n in (1, max_batch_size):
            self.predict(self.missing_rows(n))
        return time.perf_counter() - start

    def missing_rows(self, n: int) -> Dict[str, np.ndarray]:
        """``n`` rows with every feature missing (NaN / empty string)."""
        return {f.name: (np.full(n, "", dtype=object) if f.kind == keys.BYTES
                         else np.full(n, np.nan, dtype=f.np_dtype))
                for f in self.features.values()}

    def _make_flat_call(self):
        fn = self._fn
        inference_fn = getattr(fn, "inference_fn", None)
        captured = list(getattr(fn, "captured_inputs", []))
        if inference_fn is None or not hasattr(inference_fn, "call_flat"):
            return None

        def call(tensors):
            return inference_fn.call_flat(*tensors, *captured)[0].numpy()

        return call


def _feature_specs(fn, path: str) -> Dict[str, FeatureSpec]:
    _, kwargs = fn.structured_input_signature
    specs = {}
    for name, spec in sorted(kwargs.items()):
        if spec.dtype.name not in _DTYPES:
            raise ConfigError(f"Input '{name}' of the '{keys.RAW_SIGNATURE}' signature of {path} has dtype "
                              f"{spec.dtype.name}; the prodml contract allows float64, float32 or string.")
        kind, datatype, np_dtype = _DTYPES[spec.dtype.name]
        specs[name] = FeatureSpec(name, kind, datatype, np_dtype)
    return specs


def _read_model_info(path: str) -> Optional[dict]:
    return artifacts.ModelInfo.read(path).to_dict() if artifacts.ModelInfo.exists(path) else None


def is_saved_model(path: str) -> bool:
    """True when ``path`` itself is a SavedModel folder."""
    return dataio.exists(dataio.join(path, "saved_model.pb"))
