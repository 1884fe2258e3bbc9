"""PodResources v1 (proto package ``v1``, service ``v1.PodResourcesLister``).

Import the generated modules as ``from proto.kubelet.podresources.v1 import api_pb2, api_pb2_grpc``;
importing this package makes sure they are generated and current.
"""

from proto.build import ensure_generated

ensure_generated()
