"""Small clusters and pods shared by the scheduler tests, plus hypothesis strategies for random ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from gpufleet.scheduler.model import Cluster, Node, PodRequest
from gpufleet.scheduler.workload import WorkloadMix

DATA = Path(__file__).resolve().parents[2] / "bench" / "data" / "alibaba-gpu-v2023"
MODELS = ["A10", "G2", "T4", "V100M16"]


@st.composite
def clusters(draw, max_nodes: int = 12) -> Cluster:
    """A random cluster in a random partly-used state (GPU free in 0..1000, CPU free <= capacity)."""
    count = draw(st.integers(1, max_nodes))
    nodes = [Node(f"n{i}", draw(st.sampled_from([8000, 32000, 64000, 96000])),
                  draw(st.sampled_from([65536, 262144])), draw(st.sampled_from([0, 1, 2, 4, 8])),
                  draw(st.sampled_from(MODELS))) for i in range(count)]
    cluster = Cluster.from_nodes(nodes)
    for n in range(count):
        for g in range(cluster.gpu_count[n]):
            cluster.gpu_free[n, g] = draw(st.sampled_from([0, 100, 230, 470, 500, 810, 1000, 1000]))
        cluster.cpu_free[n] = draw(st.integers(0, int(cluster.cpu_capacity[n])))
        cluster.memory_free[n] = draw(st.integers(0, int(cluster.memory_capacity[n])))
    return cluster


@st.composite
def pods(draw) -> PodRequest:
    kind = draw(st.sampled_from(["cpu", "share", "whole"]))
    cpu = draw(st.sampled_from([0, 1000, 3152, 8000, 11300, 40000]))
    mem = draw(st.sampled_from([0, 4096, 65536]))
    models = tuple(draw(st.lists(st.sampled_from(MODELS + ["P100"]), max_size=2, unique=True)))
    if kind == "cpu":
        return PodRequest(cpu, mem)
    if kind == "share":
        return PodRequest(cpu, mem, 1, draw(st.sampled_from([100, 230, 470, 500, 810, 999])), models)
    return PodRequest(cpu, mem, draw(st.sampled_from([1, 2, 4, 8])), 1000, models)


@st.composite
def mixes(draw) -> WorkloadMix:
    return WorkloadMix.from_pods(draw(st.lists(pods(), min_size=1, max_size=20)), popularity=1.0)


def tiny_cluster(*gpu_free_rows: list[int], cpu: int = 64000, model: str = "G2") -> Cluster:
    """Nodes n0, n1, ... with the given free milli per GPU."""
    nodes = [Node(f"n{i}", cpu, 262144, len(row), model) for i, row in enumerate(gpu_free_rows)]
    cluster = Cluster.from_nodes(nodes)
    for i, row in enumerate(gpu_free_rows):
        cluster.gpu_free[i, : len(row)] = row
    return cluster


def arange_rank(cluster: Cluster) -> np.ndarray:
    return np.arange(len(cluster))
