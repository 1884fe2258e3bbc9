"""Generated protobuf code: produced by proto/build.py with grpcio-tools, regenerated when sources change."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from gpufleet.proto import build

SOURCE = """syntax = "proto3";
package demo.v1;
service Echo { rpc Say(Msg) returns (Msg) {} }
message Msg { string text = 1; }
"""


@pytest.fixture
def proto_dir(tmp_path: Path) -> Path:
    root = tmp_path / "proto"
    (root / "demo" / "v1").mkdir(parents=True)
    (root / "demo" / "v1" / "echo.proto").write_text(SOURCE)
    return root


def test_the_repository_contracts_are_generated_and_importable() -> None:
    from gpufleet.proto.gpufleet.v1 import agent_pb2, agent_pb2_grpc
    from gpufleet.proto.kubelet.podresources.v1 import api_pb2, api_pb2_grpc

    assert build.is_current()
    assert agent_pb2.DESCRIPTOR.package == "gpufleet.v1"
    assert hasattr(agent_pb2_grpc, "GpuAgentStub")
    # the kubelet's wire names: package v1, service PodResourcesLister, its field numbers
    assert api_pb2.DESCRIPTOR.services_by_name["PodResourcesLister"].full_name == "v1.PodResourcesLister"
    fields = api_pb2.ContainerResources.DESCRIPTOR.fields_by_name
    assert (fields["devices"].number, fields["dynamic_resources"].number) == (2, 5)
    assert api_pb2.DynamicResource.DESCRIPTOR.fields_by_name["claim_name"].number == 2
    assert hasattr(api_pb2_grpc, "PodResourcesListerServicer")


def test_generation_writes_modules_next_to_the_sources_and_a_stamp(proto_dir: Path) -> None:
    assert not build.is_current(proto_dir)
    written = build.generate(proto_dir)
    assert sorted(p.name for p in written) == ["echo_pb2.py", "echo_pb2.pyi", "echo_pb2_grpc.py"]
    grpc_module = (proto_dir / "demo" / "v1" / "echo_pb2_grpc.py").read_text()
    assert "from gpufleet.proto.demo.v1 import echo_pb2" in grpc_module  # the installed package name
    assert build.is_current(proto_dir)


def test_staleness_follows_content_not_mtimes(proto_dir: Path) -> None:
    build.generate(proto_dir)
    source = proto_dir / "demo" / "v1" / "echo.proto"
    os.utime(source, (1e10, 1e10))  # newer mtime, same content: a copy or a checkout did this
    assert build.is_current(proto_dir)
    source.write_text(SOURCE.replace("string text = 1;", "string text = 1; int32 n = 2;"))
    assert not build.is_current(proto_dir)
    build.ensure_generated(proto_dir)
    assert build.is_current(proto_dir)


def test_a_deleted_generated_module_is_regenerated(proto_dir: Path) -> None:
    build.generate(proto_dir)
    (proto_dir / "demo" / "v1" / "echo_pb2.py").unlink()
    assert not build.is_current(proto_dir)
    build.ensure_generated(proto_dir)
    assert (proto_dir / "demo" / "v1" / "echo_pb2.py").exists()


def test_without_grpcio_tools_the_error_says_what_to_install(
    proto_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "grpc_tools", None)
    with pytest.raises(build.ProtoBuildError, match="grpcio-tools is not installed"):
        build.ensure_generated(proto_dir)


def test_a_broken_proto_is_a_build_error(proto_dir: Path) -> None:
    (proto_dir / "demo" / "v1" / "echo.proto").write_text("syntax = 'proto3'; message {")
    with pytest.raises(build.ProtoBuildError, match="protoc exited"):
        build.generate(proto_dir)
