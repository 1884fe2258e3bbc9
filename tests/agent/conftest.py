"""Fixtures for the agent tests: a fake clock, simulated GPUs, a fake kubelet on a unix socket."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpufleet.autoscaler.gpu.nvml import NvmlReader
from gpufleet.autoscaler.gpu.script import Scenario, builtin_scenario, parse_scenario
from gpufleet.autoscaler.gpu.simulated import SimulatedNvml
from gpufleet.autoscaler.kubelet.fake import FakeKubelet
from gpufleet.core.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def scenario() -> Scenario:
    return builtin_scenario()


@pytest.fixture
def sim(scenario: Scenario, clock: FakeClock) -> SimulatedNvml:
    return SimulatedNvml(scenario, clock, node_name="node-a")


@pytest.fixture
def reader(sim: SimulatedNvml, clock: FakeClock) -> Iterator[NvmlReader]:
    r = NvmlReader(sim, clock, backend="simulated")
    r.open()
    yield r
    r.close()


MakeReader = Callable[[dict[str, Any]], tuple[NvmlReader, SimulatedNvml]]


@pytest.fixture
def make_reader(clock: FakeClock) -> MakeReader:
    """Opens a reader over a simulator playing a script (a decoded YAML mapping)."""

    def make(script: dict[str, Any]) -> tuple[NvmlReader, SimulatedNvml]:
        simulator = SimulatedNvml(parse_scenario(script), clock, node_name="node-a")
        r = NvmlReader(simulator, clock, backend="simulated")
        r.open()
        return r, simulator

    return make


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # unix socket paths are limited to 107 bytes, so not under pytest's long tmp_path
    path = Path(tempfile.mkdtemp(prefix="gf-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kubelet(socket_dir: Path) -> Iterator[FakeKubelet]:
    fake = FakeKubelet(str(socket_dir / "kubelet.sock")).start()
    yield fake
    fake.stop()
