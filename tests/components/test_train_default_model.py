"""The default model's data-driven settings: training length, class priors, numeric bins and the
label's scale, each checked on the session's transformed taxi sample or on plain numbers."""

import math

import numpy as np
import pytest

from prodml.components.common import dataio, keys
from prodml.components.train import default_model
from prodml.components.train.default_model import TrainStats


def taxi_fn_args(transformed, problem_type=keys.BINARY, classes=("0", "1")):
    import tensorflow_transform as tft

    from prodml.components.train.fn_args import FnArgs

    graph, examples = transformed
    return FnArgs(train_files=dataio.split_files(str(examples), keys.TRAIN),
                  eval_files=dataio.split_files(str(examples), keys.EVAL), transform_output=str(graph),
                  transformed_feature_spec=tft.TFTransformOutput(str(graph)).transformed_feature_spec(),
                  label="big_tipper", problem_type=problem_type, classes=list(classes) if classes else None,
                  epochs=10, batch_size=256, seed=42)


@pytest.mark.parametrize("rows, batch, epochs, round_steps", [
    (150, 256, 10, 60),          # tiny: 60 steps a round, not 1
    (12_000, 256, 10, 60),       # 47 steps a pass: still 60
    (100_000, 256, 10, 391),     # mid-sized: one pass a round
    (100_000, 32, 10, 3125),     # ... whatever the batch size
    (1_000_000, 256, 10, 512),   # big: a round is max_round_rows (131,072) rows, not a pass
    (1_000_000, 1024, 2, 128),   # ... in bigger batches, fewer steps; epochs bounds the rounds
])
def test_training_length_follows_the_data_size(rows, batch, epochs, round_steps):
    plan = default_model.schedule(rows, batch, epochs, default_model.HYPERPARAMETERS)
    assert plan == {"round_steps": round_steps, "rounds": epochs, "validation_rows": 65_536}


def test_rounds_on_small_data_are_one_pass_as_before_the_bound():
    """Up to max_round_rows train rows, a round is the pass it always was: small-data training
    (and the model quality figures) do not change."""
    hp = default_model.HYPERPARAMETERS
    bound = hp["max_round_rows"]
    for rows in (1, 59 * 256, 60 * 256 + 1, 100_000, bound):
        for batch in (32, 256, 1000):
            passes = max(math.ceil(rows / batch), hp["min_round_steps"])
            assert default_model.schedule(rows, batch, 10, hp)["round_steps"] == passes
    # Above the bound the round stops growing.
    assert (default_model.schedule(10 * bound, 256, 10, hp)["round_steps"]
            == default_model.schedule(bound + 1, 256, 10, hp)["round_steps"] == bound // 256)
    # Overrides (KFP gives floats) are honoured.
    assert default_model.schedule(10_000, 100, 3, {**hp, "max_round_rows": 1000.0,
                                                   "min_round_steps": 1.0})["round_steps"] == 10


def test_class_priors_give_the_train_frequencies_back():
    binary = default_model.initial_bias(keys.BINARY, TrainStats(rows=100, class_counts=[90, 10]))
    assert 1 / (1 + math.exp(-binary[0])) == pytest.approx(0.1)
    multi = default_model.initial_bias(keys.MULTICLASS, TrainStats(rows=100, class_counts=[70, 20, 10]))
    assert np.exp(multi) / np.exp(multi).sum() == pytest.approx([0.7, 0.2, 0.1])
    # A class absent from train keeps a finite bias.
    assert all(math.isfinite(b) for b in default_model.initial_bias(
        keys.MULTICLASS, TrainStats(rows=5, class_counts=[5, 0, 0])))
    assert default_model.initial_bias(keys.REGRESSION, TrainStats(rows=5)) is None


def test_bin_edges_are_distinct_quantiles_of_the_finite_values():
    values = np.arange(100.0) ** 2
    edges = default_model.bin_edges(np.append(values, np.nan), 4)
    assert edges == [0.0, 625.0, 2500.0, 5476.0, 9801.0]  # values at ranks 0, 25, 50, 74, 99
    # A flag or a small count gets its own values as edges, nothing between them.
    assert default_model.bin_edges(np.array([1.0, 1.0, 0.0, 1.0]), 16) == [0.0, 1.0]
    assert default_model.bin_edges(np.array([3.0, 1.0, 2.0] * 50), 16) == [1.0, 2.0, 3.0]
    assert default_model.bin_edges(np.array([np.nan]), 16) == []


def test_train_stats_count_the_rows_classes_and_bin_the_numbers(transformed, ingested):
    args = taxi_fn_args(transformed)
    stats = default_model.train_stats(args, bins=16)
    rows = dataio.read_json(str(ingested / keys.DATA_VERSION_FILE))["row_counts"]["train"]
    assert stats.rows == rows and sum(stats.class_counts) == rows and len(stats.class_counts) == 2
    assert 0 < stats.class_counts[1] < stats.class_counts[0]
    # Numbers are binned (fare is z-scored, so its edges straddle 0); vocabulary indices are not.
    assert "fare" in stats.bin_edges and "payment_type" not in stats.bin_edges
    fare = stats.bin_edges["fare"]
    assert fare == sorted(fare) and len(fare) == len(set(fare)) and 2 < len(fare) <= 17


def test_built_model_starts_at_the_priors_and_encodes_numbers_by_bins(transformed):
    import tensorflow as tf

    args = taxi_fn_args(transformed)
    stats = default_model.train_stats(args, bins=16)
    model = default_model.build_model(args, default_model.HYPERPARAMETERS, stats)
    bias = model.get_layer("probability").bias.numpy()
    assert bias == pytest.approx(default_model.initial_bias(keys.BINARY, stats))
    bins = model.get_layer("bins_fare")
    clip = model.get_layer("clip_fare")
    edges = stats.bin_edges["fare"]
    encoded = clip(bins(tf.constant([[edges[0] - 1.0], [edges[1]], [edges[-1] + 1.0]]))).numpy()
    assert encoded[0].tolist() == [0.0] * (len(edges) - 1)     # below every bin
    assert encoded[1][0] == pytest.approx(1.0) and encoded[1][1:].sum() == pytest.approx(0.0)
    assert encoded[2].tolist() == [1.0] * (len(edges) - 1)     # above every bin
    assert not bins.trainable


@pytest.mark.slow  # 11 s on the loaded 2-core machine: builds a model and runs a batch through it
def test_regression_output_is_in_the_label_units(transformed):
    """An untrained regression model predicts around the label's mean, at its scale."""
    args = taxi_fn_args(transformed, problem_type=keys.REGRESSION, classes=None)
    stats = TrainStats(rows=1, mean=5000.0, std=200.0)
    model = default_model.build_model(args, default_model.HYPERPARAMETERS, stats)
    features, _ = next(iter(taxi_fn_args(transformed).dataset(args.eval_files, batch_size=64)))
    predicted = model(features).numpy()
    assert abs(np.mean(predicted) - 5000.0) < 3 * 200.0
    assert model.get_layer("value").get_config()["scale"] == 200.0


def test_round_progress_lines_only_for_long_rounds():
    import logging

    from prodml.components.train import progress

    assert progress.minutes(83.4) == "01:23" and progress.minutes(3725) == "1:02:05"
    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger = logging.getLogger("test_round_progress")
    logger.addHandler(Collect())
    logger.setLevel(logging.INFO)
    for min_seconds in (0.0, 3600.0):  # every round is long; no round is
        callback = progress.round_logger(4, min_seconds=min_seconds, logger=logger)
        callback.on_train_begin()
        for epoch in range(2):
            callback.on_epoch_begin(epoch)
            callback.on_epoch_end(epoch, {"loss": 0.5, "val_loss": 0.25, "lr": 0.1})
    assert len(lines) == 2
    assert lines[0].startswith("round 1/4: loss 0.5000, val_loss 0.2500, ETA ")
    assert lines[1].startswith("round 2/4: ") and "lr" not in lines[1]
