"""Measured GPU profiles from recorded series (GenTD26 CSVs): per pod, percentiles of memory and activity.

GenTD26 (Alibaba cluster-trace-v2026-GenAI) records per pod GPU duty cycle (%) and GPU memory used
(bytes) about once a minute. It names no GPU model; the largest resident memory in the trace is
47.3 GiB, so a 48 GiB card is assumed (``SOURCE_GPU_GIB``) and memory is kept as a fraction of it.
That fraction, not the byte count, is what a profile carries to another pod: a pod that asked for a
share s of a G GiB GPU is taken to use ``fraction x s x G`` GiB (see ``sizing``).

Pods with fewer than ``min_samples`` samples are left out (too short to have a p99). The only I/O is
reading the two files.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOURCE_GPU_GIB = 48.0
GIB = 2.0**30


class ProfileError(ValueError):
    """A profile file that cannot be read (missing, wrong columns, bad numbers)."""


@dataclass(frozen=True)
class Profile:
    """One measured pod. Memory as a fraction of its GPU, activity as a fraction of time busy."""

    source: str
    samples: int
    window_s: float
    memory_p50: float
    memory_p99: float
    memory_max: float
    duty_mean: float
    duty_p95: float
    duty_p99: float


def profile_from_series(source: str, times: np.ndarray, duty_pct: np.ndarray, memory_bytes: np.ndarray,
                        gpu_gib: float = SOURCE_GPU_GIB) -> Profile:
    """Percentiles of one pod's series (duty in %, memory in bytes on a ``gpu_gib`` GPU)."""
    duty = np.clip(np.asarray(duty_pct, dtype=float) / 100.0, 0.0, 1.0)
    mem = np.clip(np.asarray(memory_bytes, dtype=float) / (gpu_gib * GIB), 0.0, 1.0)
    window = float(np.max(times) - np.min(times)) if len(times) else 0.0
    return Profile(source=source, samples=int(min(len(duty), len(mem))), window_s=window,
                   memory_p50=float(np.percentile(mem, 50)), memory_p99=float(np.percentile(mem, 99)),
                   memory_max=float(mem.max()), duty_mean=float(duty.mean()),
                   duty_p95=float(np.percentile(duty, 95)), duty_p99=float(np.percentile(duty, 99)))


def load_profiles(utilisation: str | Path, memory: str | Path, min_samples: int = 60,
                  gpu_gib: float = SOURCE_GPU_GIB) -> list[Profile]:
    """Profiles of every pod present in both files with at least ``min_samples`` samples each,
    sorted by source id (so a seed picks the same pods on every machine)."""
    duty = load_series(Path(utilisation))
    mem = load_series(Path(memory))
    out = []
    for key in sorted(set(duty) & set(mem)):
        (dt, dv), (mt, mv) = duty[key], mem[key]
        if min(len(dv), len(mv)) < min_samples:
            continue
        out.append(profile_from_series(key[:12], np.concatenate([dt, mt]), dv, mv, gpu_gib))
    if not out:
        raise ProfileError(f"no pod has >= {min_samples} samples in both {utilisation} and {memory}")
    return out


def assign(count: int, profiles: Sequence[Profile], seed: int) -> list[Profile]:
    """``count`` profiles drawn with replacement, reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(profiles), size=count)
    return [profiles[int(i)] for i in picks]


def load_series(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{pod key: (times, values)} of one GenTD26 CSV (gzip or plain)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ProfileError(f"reading profile series {path}: {err.strerror}; pass the GenTD26 CSV "
                           "(pod_gpu_duty_cycle_anon.csv.gz or pod_gpu_memory_used_bytes_anon.csv.gz)") from err
    text = gzip.decompress(raw).decode("utf-8") if raw[:2] == b"\x1f\x8b" else raw.decode("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    need = {"value", "timestamp_anon", "container_ip"}
    if not need <= set(reader.fieldnames or []):
        raise ProfileError(f"{path}:1: needs columns {', '.join(sorted(need))}, has {reader.fieldnames}")
    times: dict[str, list[float]] = defaultdict(list)
    values: dict[str, list[float]] = defaultdict(list)
    for row in reader:
        try:
            t, v = float(row["timestamp_anon"]), float(row["value"])
        except (TypeError, ValueError):
            raise ProfileError(f"{path}:{reader.line_num}: value and timestamp_anon must be numbers") from None
        key = row["container_ip"]
        times[key].append(t)
        values[key].append(v)
    return {k: (np.array(times[k]), np.array(values[k])) for k in times}
