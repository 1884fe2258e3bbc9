"""Reading per-pod GPU traces in GenTD26's layout (the backtest's input; this module does the file I/O).

Utilisation: CSV with columns ``value`` (%), ``timestamp_anon`` (seconds), ``container_ip`` (the pod key);
memory: the same columns in any order (GenTD26 writes ``timestamp_anon,value,container_ip``), bytes.
Columns are found by their header names; gzip is recognised by its magic bytes. Every problem is reported
as ``FILE:LINE: what is wrong``. An empty or NaN value is a missing sample (no data, never idle); of two
rows for the same pod and timestamp the higher value counts; both are logged, not errors.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .samples import GpuKey, Series

log = logging.getLogger(__name__)

COLUMNS = ("value", "timestamp_anon", "container_ip")
MAX_ERRORS = 10


class TraceError(ValueError):
    """The trace file cannot be used; the message names the file, the line and what to fix."""


def _open_text(path: Path) -> io.TextIOBase:
    try:
        with open(path, "rb") as raw:
            magic = raw.read(2)
    except OSError as err:
        raise TraceError(f"{path}: cannot read: {err.strerror or err}") from err
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_columns(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """pod key -> [(timestamp, value), ...] in file order."""
    path = Path(path)
    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    errors: list[str] = []
    no_value = 0
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise TraceError(f"{path}:1: empty file; expected a header with {', '.join(COLUMNS)}")
            names = [h.strip() for h in header]
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise TraceError(f"{path}:1: header {','.join(names)!r} lacks column(s) {', '.join(missing)}; "
                                 f"expected GenTD26's layout ({','.join(COLUMNS)}, any order)")
            iv, it, ik = (names.index(c) for c in COLUMNS)
            width = len(names)
            for line, row in enumerate(reader, start=2):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != width:
                    errors.append(f"{path}:{line}: {len(row)} fields, the header has {width}")
                else:
                    problem = _parse(row[iv], row[it], row[ik])
                    if isinstance(problem, str):
                        errors.append(f"{path}:{line}: {problem}")
                    elif math.isnan(problem[2]):
                        no_value += 1
                    else:
                        rows[problem[0]].append(problem[1:])
                if len(errors) >= MAX_ERRORS:
                    break
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, csv.Error) as err:
        raise TraceError(f"{path}: cannot read as (gzipped) CSV: {err}") from err
    if errors:
        more = " (stopped after the first 10)" if len(errors) >= MAX_ERRORS else ""
        raise TraceError("; ".join(errors) + more)
    if not rows:
        raise TraceError(f"{path}: no samples after the header")
    if no_value:
        log.warning("trace=%s rows_without_value=%d (no data: never idle)", path, no_value)
    return rows


def _parse(value: str, timestamp: str, key: str) -> tuple[str, float, float] | str:
    try:
        v = float(value) if value.strip() else math.nan  # empty or NaN: no data for that sample
    except ValueError:
        return f"value {value!r} is not a number"
    try:
        t = float(timestamp)
    except ValueError:
        return f"timestamp_anon {timestamp!r} is not a number (seconds)"
    if not math.isfinite(t):
        return f"timestamp_anon {timestamp!r} must be a finite number of seconds"
    if math.isinf(v):
        return f"value {value!r} must be finite"
    if v < 0:
        return f"value {v:g} is negative"
    if not key.strip():
        return "container_ip (the pod key) is empty"
    return key.strip(), t, v


def read_trace(utilisation: str | Path, memory: str | Path | None = None) -> dict[GpuKey, Series]:
    """One series per pod, sorted by time; memory joined on (pod, timestamp), NaN where missing."""
    util_rows = read_columns(utilisation)
    mem_rows = read_columns(memory) if memory is not None else {}
    trace: dict[GpuKey, Series] = {}
    duplicates = 0
    for pod in sorted(util_rows):
        merged: dict[float, float] = {}
        for t_, v in util_rows[pod]:  # one sample per timestamp; of duplicates the busiest counts
            merged[t_] = max(v, merged.get(t_, v))
        duplicates += len(util_rows[pod]) - len(merged)
        t = np.array(sorted(merged))
        mem = dict(mem_rows.get(pod, ()))
        trace[GpuKey(pod=pod)] = Series.from_arrays(
            t, [merged[x] for x in t],
            memory_used_bytes=[mem.get(x, math.nan) for x in t] if memory is not None else None)
    if duplicates:
        log.warning("trace=%s duplicate_rows=%d (same pod and timestamp; the highest value kept)",
                    utilisation, duplicates)
    return trace
