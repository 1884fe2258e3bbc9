"""gpufleet.v1: the contract between the GPU node agent and the controller.

Import the generated modules as ``from gpufleet.proto.gpufleet.v1 import agent_pb2, agent_pb2_grpc``;
importing this package checks that they were generated (when the package was built).
"""

from gpufleet.proto.build import require_generated

require_generated()
