"""gRPC contracts of gpufleet and the third-party APIs it speaks, as ``.proto`` sources.

The Python modules (``*_pb2.py``, ``*_pb2_grpc.py``) are generated from these sources by
:mod:`proto.build` with grpcio-tools, next to each ``.proto``; they are git-ignored and never edited
by hand. Importing a contract package (``proto.gpufleet.v1``, ``proto.kubelet.podresources.v1``)
regenerates them first when they are missing or older than their sources.
"""
