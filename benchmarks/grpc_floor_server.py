"""The gRPC transport floor for the serving benchmark: ``ModelInfer`` answered with a constant.

A grpcio asyncio server on uvloop, like the prodml predictor's, whose ``ModelInfer`` parses the
request and returns a fixed one-row response without touching a model. Its CPU time per
request is what grpcio itself costs on this machine: no predictor can go below it.

    python benchmarks/grpc_floor_server.py --grpc_port 8081
"""

import argparse

import uvloop
from grpc import aio
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

RESPONSE = pb.ModelInferResponse(
    model_name="floor", model_version="1", id="floor",
    outputs=[pb.ModelInferResponse.InferOutputTensor(
        name="predictions", datatype="FP32", shape=[1, 1], contents=pb.InferTensorContents(fp32_contents=[0.5]))])


class ConstantServicer(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(self, request, context):
        return RESPONSE

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)


async def serve(port: int) -> None:
    server = aio.server()
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(ConstantServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grpc_port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().grpc_port))
