"""Example preprocessing module for the taxi data: three features, the label left to prodml.

Raw features arrive as SparseTensors (a missing value is a row without a value);
``first_value`` turns one into a dense ``[batch]`` tensor and a presence mask.
"""

import tensorflow as tf
import tensorflow_transform as tft

from prodml.components.transform.default_preprocessing import first_value


def preprocessing_fn(inputs):
    fare, _ = first_value(inputs["fare"], 0.0)
    miles, _ = first_value(inputs["trip_miles"], 0.0)
    payment, _ = first_value(inputs["payment_type"], "")
    return {
        "log_fare": tft.scale_to_z_score(tf.math.log1p(tf.maximum(fare, 0.0))),
        "trip_miles": tft.scale_to_0_1(miles),
        "payment_type": tft.compute_and_apply_vocabulary(payment, num_oov_buckets=1,
                                                         vocab_filename="payment_type"),
    }
