"""gRPC contracts of gpufleet and the third-party APIs it speaks, as ``.proto`` sources.

The Python modules (``*_pb2.py``, ``*_pb2_grpc.py``) are generated from these sources by
:mod:`gpufleet.proto.build` with grpcio-tools, next to each ``.proto``; they are git-ignored and never edited
by hand; they are generated when the package is built (see :mod:`gpufleet.proto.build`).
"""
