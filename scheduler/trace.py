"""Readers for the Alibaba ``openb`` trace CSVs (cluster-trace-gpu-v2023).

Node lists: ``sn, cpu_milli, memory_mib, gpu, model``. Pod lists: ``name, cpu_milli, memory_mib,
num_gpu, gpu_milli`` and optionally ``gpu_spec`` ("" or "T4|P100"), then columns the simulator ignores
(qos, phase, times). A bad row raises ``TraceError`` naming the file, the line and the reason.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from gpufleet.scheduler.model import GPU_MILLI, ModelError, Node, PodRequest

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")


class TraceError(ValueError):
    """A trace file that cannot be read: missing file or columns, or a bad row."""


def _rows(path: Path | str, required: tuple[str, ...], text: str | None = None):
    if text is not None:
        handle = io.StringIO(text, newline="")
    else:
        try:
            handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 (closed below; open errors wrapped)
        except OSError as err:
            raise TraceError(f"reading trace {path}: {err.strerror}") from err
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise TraceError(f"{path}:1: missing column(s) {', '.join(missing)}; "
                             f"expected at least {', '.join(required)}")
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise TraceError(f"{path}:{reader.line_num}: wrong number of fields")
            yield reader.line_num, row


def _int(path: Path, line: int, row: dict[str, str], column: str) -> int:
    text = row[column].strip()
    try:
        value = int(text)
    except ValueError:
        raise TraceError(f"{path}:{line}: column {column} must be an integer, got {text!r}") from None
    if value < 0:
        raise TraceError(f"{path}:{line}: column {column} must be >= 0, got {value}")
    return value


def read_nodes(path: str | Path) -> list[Node]:
    """The nodes of an openb node list."""
    path = Path(path)
    nodes = []
    for line, row in _rows(path, NODE_COLUMNS):
        gpus = _int(path, line, row, "gpu")
        model = row["model"].strip()
        if gpus > 0 and not model:
            raise TraceError(f"{path}:{line}: a node with GPUs needs a GPU model")
        nodes.append(Node(name=row["sn"].strip(), cpu_milli=_int(path, line, row, "cpu_milli"),
                          memory_mib=_int(path, line, row, "memory_mib"), gpus=gpus, gpu_model=model))
    if not nodes:
        raise TraceError(f"{path}: no nodes")
    if len({n.name for n in nodes}) != len(nodes):
        raise TraceError(f"{path}: node names (column sn) must be unique")
    return nodes


def read_pods(path: str | Path, text: str | None = None) -> list[PodRequest]:
    """The pods of an openb pod list, in file order. ``text``: the list itself (then ``path`` only
    names it in errors, e.g. a ConfigMap key)."""
    path = Path(path) if text is None else path
    pods = []
    for line, row in _rows(path, POD_COLUMNS, text):
        num_gpu = _int(path, line, row, "num_gpu")
        gpu_milli = _int(path, line, row, "gpu_milli")
        if num_gpu == 0:
            gpu_milli = 0  # the paper's simulator ignores a share on a pod without GPUs
        if gpu_milli > GPU_MILLI:
            raise TraceError(f"{path}:{line}: gpu_milli must be <= {GPU_MILLI}, got {gpu_milli}")
        spec = (row.get("gpu_spec") or "").strip()
        try:
            pods.append(PodRequest(
                name=row["name"].strip(), cpu_milli=_int(path, line, row, "cpu_milli"),
                memory_mib=_int(path, line, row, "memory_mib"), num_gpu=num_gpu, gpu_milli=gpu_milli,
                gpu_models=tuple(m for m in spec.split("|") if m)))
        except ModelError as err:
            raise TraceError(f"{path}:{line}: {err}") from None
    if not pods:
        raise TraceError(f"{path}: no pods")
    return pods
