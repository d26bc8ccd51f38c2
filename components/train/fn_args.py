"""What a trainer module's ``run_fn(fn_args)`` receives, and the tf.data input it can use."""

import dataclasses
from typing import Any, Dict, List, Optional

from prodml.components.common import keys

SHUFFLE_BUFFER = 10_000
# Files of a split read at once (their records interleaved one by one, in a fixed order), and
# the read buffer of each: gzip decompression is the input pipeline's heaviest work.
READ_PARALLELISM = 2
READ_BUFFER_BYTES = 4 << 20


@dataclasses.dataclass
class FnArgs:
    """The inputs of ``run_fn(fn_args) -> tf_keras.Model``.

    ``run_fn`` trains and returns a model that takes the dict of transformed features (label
    excluded) and returns predictions: ``[batch]`` P(classes[1]) for binary, ``[batch]``
    values for regression, ``[batch, n_classes]`` probabilities for multiclass (``[batch, 1]``
    is accepted for the first two). prodml embeds the transform graph and exports the model.

    Attributes:
        train_files: gzipped TFRecord files of transformed train examples.
        eval_files: the same for eval (use them for early stopping, never for fitting).
        transform_output: the transform graph folder, for ``tft.TFTransformOutput``.
        transformed_feature_spec: ``tf.io`` parsing spec of the transformed examples, label included.
        label: the label's name; the transformed label is an int64 class index for
            classification, a float32 value for regression.
        problem_type: ``binary``, ``multiclass`` or ``regression``.
        classes: the label's classes as strings (``None`` for regression); index i is classes[i].
        epochs: the maximal number of epochs.
        batch_size: examples per batch.
        seed: the random seed (prodml sets the global seeds before ``run_fn``).
        hyperparameters: free-form parameters given to ``run_train``.
    """

    train_files: List[str]
    eval_files: List[str]
    transform_output: str
    transformed_feature_spec: Dict[str, Any]
    label: str
    problem_type: str
    classes: Optional[List[str]]
    epochs: int
    batch_size: int
    seed: int
    hyperparameters: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """Number of classes; 0 for regression."""
        return len(self.classes or [])

    def dataset(self, files: List[str], shuffle: bool = False, batch_size: Optional[int] = None,
                rows: Optional[int] = None, skip: int = 0, features: Optional[List[str]] = None):
        """A ``tf.data.Dataset`` of ``(features dict, label)`` batches read from ``files``.

        The files are read in parallel, their records interleaved in a fixed order (one file:
        its order); batches are parsed in parallel and prefetched, in order. With ``shuffle``
        the order is shuffled with ``seed``, differently at each epoch but the same from one run
        to the next. ``skip`` drops the first that many records, then ``rows`` keeps only the
        first that many. ``features`` parses only those features (and the label), which saves a
        pass over all rows about a third of its CPU. Iterating fails with
        ``tf.errors.InvalidArgumentError`` on a label that is missing or not one of the classes.
        """
        import tensorflow as tf

        spec = dict(self.transformed_feature_spec)
        if features is not None:
            spec = {name: spec[name] for name in [*features, self.label]}
        check_label = _label_check(self.label, self.problem_type, self.n_classes)

        def parse(records):
            features = tf.io.parse_example(records, spec)
            label = features.pop(self.label)
            return features, check_label(label)

        data = records(files)
        if skip:
            data = data.skip(skip)
        if rows is not None:
            data = data.take(rows)
        if shuffle:
            data = data.shuffle(SHUFFLE_BUFFER, seed=self.seed, reshuffle_each_iteration=True)
        return (data.batch(batch_size or self.batch_size)
                .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .prefetch(tf.data.AUTOTUNE))

    def tft_output(self):
        """The ``tft.TFTransformOutput`` of the transform graph (vocabularies, bucket counts)."""
        import tensorflow_transform as tft

        return tft.TFTransformOutput(self.transform_output)


def records(files: List[str]):
    """The serialized records of the gzipped TFRecord ``files``, in a fixed order.

    One file is read in its order; several are read ``READ_PARALLELISM`` at a time, one
    record from each in turn (deterministic, whatever the threads' timing).
    """
    import tensorflow as tf

    files = list(files)

    def read(names):
        return tf.data.TFRecordDataset(names, compression_type="GZIP", buffer_size=READ_BUFFER_BYTES)

    if len(files) <= 1:
        return read(files)
    parallel = min(len(files), READ_PARALLELISM)
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        read, cycle_length=parallel, block_length=1, num_parallel_calls=parallel, deterministic=True)


def _label_check(label: str, problem_type: str, n_classes: int):
    import tensorflow as tf

    if problem_type == keys.REGRESSION:
        def check(y):
            return tf.debugging.assert_all_finite(y, BAD_LABEL.format(label=label))
        return check

    def check(y):
        with tf.control_dependencies([
                tf.debugging.assert_non_negative(y, message=BAD_LABEL.format(label=label)),
                tf.debugging.assert_less(y, tf.constant(n_classes, y.dtype),
                                         message=BAD_LABEL.format(label=label))]):
            return tf.identity(y)
    return check


# Also the marker the executor looks for to turn the failure into an InputDataError.
BAD_LABEL = "prodml: label {label} is missing or not one of the classes"
