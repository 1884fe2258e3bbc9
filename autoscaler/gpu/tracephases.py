"""Simulated GPUs that play a real pod's recorded series (GenTD26's layout), as script phases.

A GPU entry of a simulation script may say::

    trace:
      utilisation: bench/data/alibaba-gentd26/pod_gpu_duty_cycle_anon.csv.gz
      memory: bench/data/alibaba-gentd26/pod_gpu_memory_used_bytes_anon.csv.gz   # optional
      pod: 3            # the 4th pod of the file (sorted by key), or its container_ip key
      speed: 57         # play 57 recorded seconds per second (one GenTD26 sample a second); default 1
      start: 0          # skip this many recorded seconds first

Each recorded sample becomes a phase lasting until the next sample (divided by ``speed``), with the
recorded utilisation and memory; the last sample lasts one median step. Paths are relative to the
working directory. Files are read once per path (a fleet of simulated nodes shares them).
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import math
from typing import Any

_TRACE_KEYS = frozenset({"utilisation", "memory", "pod", "speed", "start"})
_MIB = 2**20


@functools.lru_cache(maxsize=8)
def _column(path: str) -> dict[str, list[tuple[float, float]]]:
    """pod key -> [(timestamp, value)] in time order, from a GenTD26-layout CSV (gzip allowed). Plain csv,
    no numpy: the agent layer stays free of it."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    opened = io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="") if gz else \
        open(path, encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    with opened as text:
        reader = csv.reader(text)
        header = next(reader, [])
        try:
            v, t, k = (header.index(c) for c in ("value", "timestamp_anon", "container_ip"))
        except ValueError:
            raise ValueError(f"{path}: header must name value, timestamp_anon and container_ip, got {header}") from None
        out: dict[str, list[tuple[float, float]]] = {}
        for n, row in enumerate(reader, start=2):
            try:
                out.setdefault(row[k], []).append((float(row[t]), float(row[v])))
            except (ValueError, IndexError):
                raise ValueError(f"{path}:{n}: expected numbers in value and timestamp_anon, got {row}") from None
    for rows in out.values():
        rows.sort()
    return out


def _read(utilisation: str, memory: str | None) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """pod key -> (timestamps, utilisation %, memory bytes or NaN) on the utilisation samples' times."""
    mem = _column(memory) if memory else {}
    out = {}
    for pod, rows in _column(utilisation).items():
        at = dict(mem.get(pod, []))
        out[pod] = ([r[0] for r in rows], [r[1] for r in rows], [at.get(r[0], math.nan) for r in rows])
    return out


def trace_phases(raw: object, memory_mib: int, path: str, errors: list[str]) -> tuple[Any, ...]:
    """The phases of a ``trace:`` entry; problems go to ``errors`` with their path."""
    from gpufleet.autoscaler.gpu.script import Phase

    if not isinstance(raw, dict):
        errors.append(f"{path}: must be a mapping with 'utilisation' (a GenTD26-layout CSV)")
        return ()
    unknown = sorted(set(raw) - _TRACE_KEYS)
    if unknown:
        errors.append(f"{path}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(_TRACE_KEYS))})")
    utilisation, memory = raw.get("utilisation"), raw.get("memory")
    if not isinstance(utilisation, str) or (memory is not None and not isinstance(memory, str)):
        errors.append(f"{path}.utilisation/memory: must be file paths")
        return ()
    speed, start = raw.get("speed", 1), raw.get("start", 0)
    if not isinstance(speed, (int, float)) or not speed > 0:
        errors.append(f"{path}.speed: must be a positive number, got {speed!r}")
        return ()
    if not isinstance(start, (int, float)) or start < 0:
        errors.append(f"{path}.start: must be >= 0 recorded seconds, got {start!r}")
        return ()
    try:
        pods = _read(utilisation, memory)
    except OSError as err:
        errors.append(f"{path}: cannot read {err.filename}: {err.strerror or err}")
        return ()
    except ValueError as err:
        errors.append(f"{path}: {err}")
        return ()
    which = raw.get("pod", 0)
    keys = sorted(pods)
    if isinstance(which, int) and not isinstance(which, bool):
        if not 0 <= which < len(keys):
            errors.append(f"{path}.pod: index {which} out of range (the file has {len(keys)} pods)")
            return ()
        series = pods[keys[which]]
    elif isinstance(which, str) and which in pods:
        series = pods[which]
    else:
        errors.append(f"{path}.pod: must be an index or a container_ip key of the file, got {which!r}")
        return ()
    t, utils, mems = series
    keep = [i for i in range(len(t)) if t[i] >= t[0] + start]
    if not keep:
        errors.append(f"{path}.start: {start} s is past the end of the series")
        return ()
    steps = sorted(t[i + 1] - t[i] for i in keep[:-1]) or [60.0]
    median = steps[len(steps) // 2] or 60.0
    phases = []
    for n, i in enumerate(keep):
        length = (t[keep[n + 1]] - t[i]) if n + 1 < len(keep) else median
        util = int(round(min(100.0, max(0.0, utils[i]))))
        used = mems[i]
        mem = 0 if math.isnan(used) else min(memory_mib, int(used / _MIB))
        phases.append(Phase(seconds=max(length, 1e-3) / speed, util_low=util, util_high=util, memory_mib=mem,
                            processes=1 if util > 0 or mem > 0 else 0))
    return tuple(phases)
