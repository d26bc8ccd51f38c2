"""The train statistics pass parses only the label past the bins' sample: its counts and edges
are those of a plain pass parsing every feature of every row."""

import math

import numpy as np
from test_train_default_model import taxi_fn_args

from prodml.components.train import default_model


def test_label_only_rows_past_the_sample_give_the_plain_pass_statistics(transformed, monkeypatch):
    monkeypatch.setattr(default_model, "QUANTILE_ROWS", 1000)
    monkeypatch.setattr(default_model, "STATS_BATCH_SIZE", 256)
    args = taxi_fn_args(transformed)
    stats = default_model.train_stats(args, bins=16)

    sample_rows = math.ceil(1000 / 256) * 256
    labels, samples = [], {name: [] for name in default_model.numeric_features(args)}
    for features, label in args.dataset(args.train_files, batch_size=256):
        if sum(len(part) for part in labels) < sample_rows:
            for name in samples:
                samples[name].append(features[name].numpy().reshape(-1))
        labels.append(label.numpy())
    labels = np.concatenate(labels)
    assert len(labels) > sample_rows  # the label-only pass ran
    assert stats.rows == len(labels)
    assert stats.class_counts == np.bincount(labels, minlength=2).tolist()
    edges = {name: default_model.bin_edges(np.concatenate(parts), 16) for name, parts in samples.items()}
    assert stats.bin_edges == {name: e for name, e in edges.items() if len(e) > 2}
