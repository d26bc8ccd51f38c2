"""The rows infra_validate sends to the served candidate, and the predictions it must get back.

The rows are the first eval examples plus missing-value variants: each raw feature in turn is
removed from one row, and one row has every feature missing. The expected predictions come
from the candidate's ``serving_examples`` signature on those serialized ``tf.Example`` records,
the path evaluate scores (locally in the runtime environment, where evaluate ran). The served
answers come from the raw-feature signature behind the predictor, so the comparison covers the
serving runtime, the request codecs and the missing-value convention (null in JSON, NaN / ""
in gRPC, an absent feature in a ``tf.Example``).
"""

import dataclasses
import math
from typing import Any, Dict, List, Optional

from prodml.components.common import dataio, keys
from prodml.components.common.errors import InputDataError


@dataclasses.dataclass
class Probe:
    """Rows as JSON objects (None: missing), the features' kinds, and the expected predictions."""

    features: Dict[str, str]
    rows: List[Dict[str, Any]]
    serialized: List[bytes]   # the same rows as tf.Example records (a missing value is an absent feature)
    eval_rows: int            # how many rows are eval examples as they are
    missing_rows: int         # how many rows have at least one missing value

    def to_request(self, concurrency: int, requests: int, max_load_seconds: float) -> Dict[str, Any]:
        """The probe file ``serving_check`` reads (without the expected predictions)."""
        return {"features": self.features, "rows": self.rows, "concurrency": concurrency, "requests": requests,
                "max_load_seconds": max_load_seconds}


def read_probe(examples_dir: str, features: Dict[str, str], n_rows: int) -> Probe:
    """Reads up to ``n_rows`` eval examples and adds the missing-value variants."""
    import tensorflow as tf

    files = dataio.split_files(examples_dir, keys.EVAL)
    try:
        records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(n_rows)]
    except tf.errors.DataLossError as e:
        raise InputDataError(f"Cannot read the eval examples {files}: {e.message}. They must be gzipped TFRecord "
                             "files of tf.Example, as ingest writes them.") from e
    if not records:
        raise InputDataError(f"The eval split of {examples_dir} has no example to send to the served model. "
                             "Re-run ingest with data that has eval rows.")
    examples = [tf.train.Example.FromString(r) for r in records]
    serialized = list(records)
    base = list(examples)
    for i, name in enumerate(sorted(features)):
        # The next row (round robin) that has the feature: without it, it is missing already.
        having = [e for e in base[i % len(base):] + base[:i % len(base)] if name in e.features.feature]
        if not having:
            continue
        variant = tf.train.Example()
        variant.CopyFrom(having[0])
        del variant.features.feature[name]
        examples.append(variant)
        serialized.append(variant.SerializeToString())
    examples.append(tf.train.Example())
    serialized.append(b"")
    rows = [_row(example, features, examples_dir) for example in examples]
    missing = sum(1 for row in rows if any(v is None for v in row.values()))
    return Probe(dict(features), rows, serialized, len(records), missing)


def _row(example, features: Dict[str, str], examples_dir: str) -> Dict[str, Any]:
    row = {}
    for name, kind in features.items():
        feature = example.features.feature.get(name)
        value: Optional[Any] = None
        if feature is not None:
            values = {keys.INT: feature.int64_list.value, keys.FLOAT: feature.float_list.value,
                      keys.BYTES: feature.bytes_list.value}[kind]
            if values:
                value = values[0]
        if kind == keys.BYTES and value is not None:
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputDataError(f"Feature '{name}' of an eval example in {examples_dir} is not UTF-8 text "
                                     f"({e.reason}); JSON requests cannot carry it. Ingest writes text as "
                                     "UTF-8: re-run ingest.") from e
        elif kind == keys.FLOAT and value is not None and math.isnan(value):
            value = None
        elif kind == keys.INT and value is not None:
            value = int(value)
        row[name] = value
    return row


def expected_predictions(model_dir: str, probe: Probe) -> List[Any]:
    """The ``serving_examples`` signature's predictions of the probe rows, as evaluate computes them."""
    import tensorflow as tf

    from prodml.components.common.saved_models import load_examples_signature

    outputs = load_examples_signature(model_dir)(tf.constant(probe.serialized))
    return outputs[keys.PREDICTIONS].numpy().tolist()
