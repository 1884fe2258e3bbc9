"""No dashboard query or legend names a metric or label that nothing exports (checked from the source).

What counts as exported: the string constants of gpufleet's metrics modules (metric names, label
names), with histogram and info suffixes; the recording rules of deploy/monitoring/rules; the
few control-plane series the dashboards read, each listed with the component that exports it; and the
labels Prometheus adds (job, instance, le) or the scrape config sets (cluster).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
#: Modules that define gpufleet's metrics (the controller's join here when they exist).
EXPORTERS = sorted({*REPO.glob("scheduler/**/metrics.py"), *REPO.glob("autoscaler/**/metrics.py"),
                    REPO / "autoscaler/cost/attribution.py"})
#: Series read from the control plane or Prometheus itself -> who exports them, and their labels.
EXTERNAL = {"up": ("prometheus", set()),
            "scheduler_schedule_attempts_total": ("kube-scheduler", {"profile", "result"})}
TARGET_LABELS = {"cluster", "job", "instance", "le", "__name__"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def exported() -> tuple[set[str], set[str]]:
    """(metric names, label names) defined by the exporters' source and the recording rules."""
    strings: set[str] = set()
    for path in EXPORTERS:
        strings |= {n.value for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    names = {s for s in strings if re.fullmatch(
        r"(gpufleet_|DCGM_FI_|node_gpu_|kubecost_|container_gpu_)[A-Za-z0-9_]+", s)}  # gpufleet, DCGM, OpenCost
    names |= {f"{n}{suffix}" for n in names for suffix in ("_bucket", "_sum", "_count", "_info", "_total")}
    labels = {s for s in strings if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s)}
    rules = yaml.safe_load((REPO / "deploy/monitoring/rules/gpufleet.rules.yaml").read_text())
    names |= {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    for _, extra in EXTERNAL.values():
        labels |= extra
    return names | set(EXTERNAL), labels | TARGET_LABELS


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression refers to."""
    labels: set[str] = set()
    for body in _MATCHERS.findall(_STRING.sub('""', expr)):
        labels |= {m.group(1) for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", body)}
    rest = _MATCHERS.sub(" ", _STRING.sub('""', expr))
    for body in _LABEL_LIST.findall(rest):
        labels |= {part.strip() for part in body.split(",") if part.strip()}
    rest = _RANGE.sub(" ", _LABEL_LIST.sub(" ", rest))
    metrics = set()
    for m in _IDENT.finditer(rest):
        name, after = m.group(0), rest[m.end():].lstrip()
        if name.lower() in KEYWORDS or after.startswith("(") or name.startswith("$"):
            continue
        if rest[max(0, m.start() - 1)] == "$":
            continue
        metrics.add(name)
    return metrics, labels


def test_the_parser_finds_metrics_and_labels() -> None:
    metrics, labels = names_in('sum by (hostname) (rate(a_total{x="1", y=~"$v"}[$__rate_interval]))'
                               ' * on (instance) group_left (z) b_info')
    assert metrics == {"a_total", "b_info"} and labels == {"hostname", "x", "y", "instance", "z"}


def test_the_catalogue_knows_the_exporters() -> None:
    metrics, labels = exported()
    assert {"gpufleet_extender_request_duration_seconds_bucket", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_SM_CLOCK",
            "DCGM_FI_DEV_MEM_CLOCK", "gpufleet_agent_info"} <= metrics
    assert {"verb", "modelName", "hostname", "pod", "namespace", "gpu", "UUID"} <= labels
    assert "gpufleet_extender_no_such_metric" not in metrics


def _all_queries(panels: ModuleType) -> list[tuple[str, str, str]]:
    boards = panels.load()
    out = [(q.dashboard, q.panel, q.expr) for q in panels.queries(boards)]
    out += [(stem, f"variable {name}", panels.variable_expr(query)[0])
            for stem, board in boards.items() for name, query in panels.variable_queries(board).items()]
    return out


def test_no_query_names_a_metric_or_label_that_nothing_exports(panels: ModuleType) -> None:
    metrics, labels = exported()
    problems = []
    for dashboard, panel, expr in _all_queries(panels):
        used_metrics, used_labels = names_in(expr)
        problems += [f"{dashboard} / {panel}: metric {m}" for m in sorted(used_metrics - metrics)]
        problems += [f"{dashboard} / {panel}: label {lb}" for lb in sorted(used_labels - labels)]
    assert not problems, "\n".join(problems)


def test_no_legend_names_a_label_that_nothing_exports(panels: ModuleType) -> None:
    _, labels = exported()
    bad = [(q.dashboard, q.panel, lb) for q in panels.queries(panels.load()) for lb in q.legend_labels
           if lb not in labels]
    assert not bad


def _dcgm_12239() -> ModuleType:
    """test_panels_on_prometheus.py, for its DCGM 12239 panel queries (loaded by path: tests are no package)."""
    path = Path(__file__).with_name("test_panels_on_prometheus.py")
    spec = importlib.util.spec_from_file_location("gpufleet_monitoring_dcgm_12239", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dcgm_12239_panels_name_exported_metrics_except_the_known_gaps() -> None:
    """The SM clock panel included; only the profiling (DCGM_FI_PROF_*) panel names what nothing exports."""
    dcgm = _dcgm_12239()
    metrics, labels = exported()
    for title, expr in dcgm.DCGM_12239.items():
        used_metrics, used_labels = names_in(expr)
        assert used_metrics <= metrics and used_labels <= labels, (title, used_metrics - metrics,
                                                                   used_labels - labels)
    assert "GPU SM Clocks" in dcgm.DCGM_12239
    for title, expr in dcgm.DCGM_12239_NOT_EXPORTED.items():
        assert names_in(expr)[0] - metrics, f"{title} is fed now: move it to DCGM_12239"


@pytest.mark.parametrize("expr", ["gpufleet_extender_typo_total", 'DCGM_FI_DEV_GPU_UTIL{Hostname="a"}'])
def test_a_misspelt_metric_or_label_is_caught(expr: str) -> None:
    metrics, labels = exported()
    used_metrics, used_labels = names_in(expr)
    assert (used_metrics - metrics) or (used_labels - labels)
