"""The usual hand-written KServe predictor, as the serving benchmark's baseline.

A ``kserve.Model`` whose ``predict`` turns each request's JSON (V1 ``instances``) or V2 inputs
into tensors and calls the SavedModel's ``serving_default`` signature once per request: no
batching, no validation beyond what TensorFlow does, stock ``kserve.ModelServer`` settings.

    python benchmarks/baseline_predictor.py --model_name chicago-taxi --model_dir <version folder>
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kserve
import numpy as np
import tensorflow as tf
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse


class BaselinePredictor(kserve.Model):
    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self.fn = None
        self.specs = {}

    def load(self) -> bool:
        self.fn = tf.saved_model.load(self.model_dir).signatures["serving_default"]
        self.specs = self.fn.structured_input_signature[1]
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            tensors = {}
            for infer_input in payload.inputs:
                values = infer_input.as_numpy()
                if self.specs[infer_input.name].dtype == tf.string:
                    values = np.array(["" if v is None else v for v in values], dtype=object)
                tensors[infer_input.name] = tf.constant(values, dtype=self.specs[infer_input.name].dtype)
            predictions = self.fn(**tensors)["predictions"].numpy()
            output = InferOutput("predictions", list(predictions.shape), "FP32")
            output.set_data_from_numpy(predictions, binary_data=False)
            return InferResponse(payload.id or "0", self.name, infer_outputs=[output])
        instances = payload["instances"]
        tensors = {}
        for name, spec in self.specs.items():
            if spec.dtype == tf.string:
                values = ["" if row[name] is None else row[name] for row in instances]
            else:
                values = [np.nan if row[name] is None else row[name] for row in instances]
            tensors[name] = tf.constant(values, dtype=spec.dtype)
        predictions = self.fn(**tensors)["predictions"].numpy()
        return {"predictions": predictions.tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True, help="A SavedModel folder.")
    args, _ = parser.parse_known_args()
    model = BaselinePredictor(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port).start([model])
