"""The generated dashboards as Grafana would run them: every panel's queries with the variables and
``$__rate_interval`` substituted, and the labels each legend names. Standard library only.

Used by tests/monitoring (every query must return series carrying its legend's labels) and by
render.py (the PNGs in docs/images/).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
_LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    unit: str
    kind: str
    expr: str  # as written, with variables
    legend: str
    instant: bool

    @property
    def legend_labels(self) -> tuple[str, ...]:
        return tuple(_LEGEND_LABEL.findall(self.legend))

    def resolved(self, variables: Mapping[str, str], rate_interval: str) -> str:
        """``expr`` with ``$__rate_interval`` and ``$name`` / ``${name}`` substituted (longest names first)."""
        expr = self.expr.replace("$__rate_interval", rate_interval)
        for name in sorted(variables, key=len, reverse=True):
            expr = expr.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
        return expr


def rate_interval(scrape_interval_s: float, step_s: float) -> str:
    """Grafana's ``$__rate_interval``: max(step + scrape interval, 4 x scrape interval)."""
    return f"{max(step_s + scrape_interval_s, 4 * scrape_interval_s):g}s"


def all_values(dashboard: dict) -> dict[str, str]:
    """Each query variable set to "All" (its allValue)."""
    return {v["name"]: v.get("allValue", ".*") for v in dashboard.get("templating", {}).get("list", [])
            if v.get("type") == "query"}


def variable_queries(dashboard: dict) -> dict[str, str]:
    return {v["name"]: v["query"] for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "query"}


def load(directory: Path = DASHBOARD_DIR) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}


def queries(dashboards: Mapping[str, dict]) -> Iterator[PanelQuery]:
    for stem, board in dashboards.items():
        for panel in board.get("panels", []):
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            for target in panel.get("targets", []):
                yield PanelQuery(stem, panel["title"], unit, panel["type"], target["expr"],
                                 target.get("legendFormat", ""), bool(target.get("instant")))


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)$")


def variable_expr(query: str) -> tuple[str, str]:
    """A ``label_values(selector, label)`` variable as (PromQL giving one series per value, label)."""
    match = _LABEL_VALUES.match(query.strip())
    if match is None:
        raise ValueError(f"not a label_values() query: {query}")
    return f"count by ({match['label']}) ({match['selector']})", match["label"]
