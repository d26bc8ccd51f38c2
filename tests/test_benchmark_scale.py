"""benchmarks/scale.py without running a pipeline: its data, its figures and its table."""

import importlib.util
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "benchmarks")


def _load(name: str):
    if BENCHMARKS not in sys.path:  # as when a script runs: its folder first, for `import _common`
        sys.path.insert(0, BENCHMARKS)
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scale():
    return _load("scale")


def test_data_is_streamed_in_chunks_and_the_same_for_any_chunk_size(scale, tmp_path):
    pieces = list(scale.iter_chunks(2_500, seed=3, chunk_rows=1_000))
    assert len(pieces) == 1 + 3  # the header, then 1,000 + 1,000 + 500 rows
    assert [p.count(b"\n") for p in pieces] == [1, 1_000, 1_000, 500]
    whole = b"".join(scale.iter_chunks(2_500, seed=3, chunk_rows=2_500))
    assert b"".join(pieces) == whole
    assert b"".join(scale.iter_chunks(2_500, seed=4, chunk_rows=1_000)) != whole

    path = scale.make_data(2_500, 3, str(tmp_path), chunk_rows=700)
    assert os.path.basename(path) == "taxi-2500-3.csv"
    with open(path, "rb") as f:
        assert f.read() == whole
    assert not os.path.exists(path + ".tmp")


def test_data_matches_the_in_memory_resample_of_batch_predict(scale, tmp_path):
    batch_predict = _load("batch_predict")
    os.makedirs(tmp_path / "a")
    os.makedirs(tmp_path / "b")
    streamed = scale.make_data(3_000, 11, str(tmp_path / "a"), chunk_rows=1_234)
    in_memory = batch_predict.make_data(3_000, 11, str(tmp_path / "b"))
    with open(streamed, "rb") as a, open(in_memory, "rb") as b:
        assert a.read() == b.read()


def _run(rows, steps, peaks, auc, peak):
    return {"rows": rows, "wall": sum(steps.values()) + 5, "total_seconds": sum(steps.values()) + 2,
            "step_seconds": steps, "step_peak_rss_mb": peaks, "peak_rss_mb": peak, "auc": auc, "epochs_run": 10}


def test_figures_table_and_scaling(scale):
    small_steps = {"ingest": 10, "validate": 14, "transform": 50, "train": 66, "evaluate": 9, "push": 3, "deploy": 1}
    big_steps = {"ingest": 40, "validate": 50, "transform": 200, "train": 300, "evaluate": 20, "push": 4, "deploy": 2}
    small = scale.summarise(_run(100_000, small_steps, {"transform": 900.0, "push": 300.0}, 0.99, 1100.0),
                            {"tft": {"floor": "tft", "seconds": 25.0}, "fit": {"floor": "fit", "seconds": 33.0}})
    big = scale.summarise(_run(1_000_000, big_steps, {"transform": 1500.0}, 0.9998, 2048.0),
                          {"tft": {"floor": "tft", "seconds": 100.0}, "fit": {"floor": "fit", "seconds": 250.0}})

    assert small["total_seconds"] == 155
    assert small["other_seconds"] == 4 and small["other_steps"] == {"push": 3, "deploy": 1}
    assert small["stages"]["transform"] == {"seconds": 50, "rows_per_second": 2000.0, "peak_rss_mb": 900.0,
                                            "floor_seconds": 25.0, "x_floor": 2.0}
    assert small["stages"]["train"]["x_floor"] == 2.0 and "x_floor" not in small["stages"]["ingest"]
    assert big["stages"]["train"]["x_floor"] == 1.2

    failed = scale.summarise(_run(100_000, small_steps, {}, 0.99, 1100.0), {"tft": {"floor": "tft", "error": "OOM"}})
    assert "x_floor" not in failed["stages"]["transform"] and failed["floors"]["tft"] == {"error": "OOM"}

    (growth,) = scale.scaling([big, small])
    assert growth["rows"] == [100_000, 1_000_000] and growth["rows_ratio"] == 10
    assert growth["cost_per_row_ratio"] == round((618 / 1e6) / (155 / 1e5), 2)
    assert growth["stage_cost_per_row_ratio"]["transform"] == 0.4
    assert growth["memory_ratio"] == round(2048 / 1100, 2)
    assert growth["stage_memory_ratio"] == {"transform": round(1500 / 900, 2)}
    (line,) = scale.scaling_lines([growth])
    assert "cost per row x0.4" in line and "peak memory x1.86" in line

    table = scale.table([small, big]).splitlines()
    assert table[0].startswith("| rows | total | ingest | validate | transform | train | evaluate | other steps")
    assert table[2].split(" | ")[:5] == ["| 100,000", "**2 min 35 s**", "10 s", "14 s"] + ["50 s (floor 25 s, ×2.0)"]
    assert "2.0 GB" in table[3] and "0.9998" in table[3]
    memory = scale.memory_table([small, big]).splitlines()
    assert "push peak" in memory[0] and "900 MB" in memory[2] and "300 MB" in memory[2]


def test_rows_argument(scale):
    assert scale.parse_rows("100000,1000000") == [100_000, 1_000_000]
    assert scale.parse_rows("100k,1M,10m") == [100_000, 1_000_000, 10_000_000]
    with pytest.raises(Exception, match="at least 1000"):
        scale.parse_rows("10")


def test_peak_memory_is_attributed_to_the_step_a_subprocess_runs(scale, tmp_path):
    import sys

    # A parent (the pipeline process) starts a child named like a kfp.local step, which holds ~80 MB.
    child = ("import sys, time; block = bytearray(80 * 2**20); block[::4096] = b'x' * len(block[::4096]); "
             "time.sleep(1.5)")
    parent = (f"import subprocess, sys; print('▶ ingest', file=sys.stderr, flush=True); "
              f"subprocess.run([sys.executable, '-c', {child!r}, '--function_to_execute', 'infra_validate'], "
              f"check=True); print('✔ ingest success in 1.0s', file=sys.stderr); print('done')")
    seen = []
    measured = scale.run_measured([sys.executable, "-c", parent], str(tmp_path / "log"),
                                  lambda line, sampler: seen.append((line.strip(), sampler.current_step)))
    assert measured["stdout"].strip() == "done"
    assert measured["step_peak_rss_mb"]["infra-validate"] >= 80
    assert "ingest" not in measured["step_peak_rss_mb"]  # the child named its step
    assert measured["peak_rss_mb"] >= measured["step_peak_rss_mb"]["infra-validate"]
    assert (tmp_path / "log").read_text().splitlines() == ["▶ ingest", "✔ ingest success in 1.0s"]

    sampler = scale.TreeSampler(0)
    scale._follow_steps("▶ transform\n", sampler)
    assert sampler.current_step == "transform"
    scale._follow_steps("✔ transform success in 3.0s\n", sampler)
    assert sampler.current_step is None


def test_both_floors_are_there_with_the_arguments_scale_passes(scale):
    import inspect

    floors = _load("scale_floors")
    assert sorted(floors.FLOORS) == ["fit", "tft"]
    assert list(inspect.signature(floors.tft_floor).parameters) == ["examples_dir", "schema_dir", "workdir"]
    assert list(inspect.signature(floors.fit_floor).parameters) == [
        "transform_graph_dir", "transformed_examples_dir", "model_dir", "workdir"]
    assert floors.main([]) == 2  # usage
