"""V2 inference responses built straight from a micro-batch result.

The same documents KServe's ``InferResponse.to_rest`` / ``to_grpc`` produce for one
``predictions`` output, without building the intermediate objects on every request.
"""

import uuid
from typing import Any, Optional

from kserve.constants.constants import GRPC_CONTENT_DATATYPE_MAPPINGS
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from prodml.components.common import keys
from prodml.serving.batcher import BatchResult


def v2_json(model_name: str, request_id: Optional[Any], served: BatchResult) -> dict:
    """The V2 REST response body (serialize with orjson's ``OPT_SERIALIZE_NUMPY``)."""
    predictions = served.predictions
    return {
        "id": str(request_id) if request_id is not None else str(uuid.uuid4()),
        "model_name": model_name,
        "model_version": str(served.version.version),
        "outputs": [{"name": keys.PREDICTIONS, "shape": list(predictions.shape),
                     "datatype": served.version.output_datatype, "data": predictions.reshape(-1)}],
    }


def v2_grpc(model_name: str, request_id: str, served: BatchResult) -> pb.ModelInferResponse:
    """The gRPC ``ModelInferResponse`` with typed contents."""
    predictions = served.predictions
    datatype = served.version.output_datatype
    contents = pb.InferTensorContents(**{GRPC_CONTENT_DATATYPE_MAPPINGS[datatype]: predictions.reshape(-1).tolist()})
    output = pb.ModelInferResponse.InferOutputTensor(name=keys.PREDICTIONS, datatype=datatype,
                                                     shape=predictions.shape, contents=contents)
    return pb.ModelInferResponse(model_name=model_name, model_version=str(served.version.version),
                                 id=request_id or str(uuid.uuid4()), outputs=[output])
