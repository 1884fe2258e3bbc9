"""Device plugin v1beta1 (proto package ``v1beta1``, services ``v1beta1.Registration`` and
``v1beta1.DevicePlugin``).

Import the generated modules as ``from gpufleet.proto.kubelet.deviceplugin.v1beta1 import api_pb2,
api_pb2_grpc``; importing this package checks that they were generated (when the package was built).
"""

from gpufleet.proto.build import require_generated

require_generated()
