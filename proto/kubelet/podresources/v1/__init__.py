"""PodResources v1 (proto package ``v1``, service ``v1.PodResourcesLister``).

Import the generated modules as ``from gpufleet.proto.kubelet.podresources.v1 import api_pb2, api_pb2_grpc``;
importing this package checks that they were generated (when the package was built).
"""

from gpufleet.proto.build import require_generated

require_generated()
