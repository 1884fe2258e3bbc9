"""gpufleet.v1: the contract between the GPU node agent and the controller.

Import the generated modules as ``from proto.gpufleet.v1 import agent_pb2, agent_pb2_grpc``;
importing this package makes sure they are generated and current.
"""

from proto.build import ensure_generated

ensure_generated()
