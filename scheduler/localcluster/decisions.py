"""The extender's decisions as it recorded them: its log at INFO has one line per prioritize answer
that chose a node (``pod=NS/NAME policy=P node=N gpus=G``) and one per bind (``... bound``).

``read_decisions`` keeps the last decision per pod (a pod scored again after a failed attempt is
decided again); ``fidelity`` compares them with where the pods were bound. No I/O but the log file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_DECISION = re.compile(r" pod=(?P<pod>\S+) policy=(?P<policy>\S+) node=(?P<node>\S+) gpus=(?P<gpus>\S*)$")


@dataclass(frozen=True)
class Decision:
    pod: str  # namespace/name
    policy: str
    node: str
    gpus: tuple[int, ...]


def parse_decisions(lines: Iterable[str]) -> dict[str, Decision]:
    """The last decision per pod among log ``lines``."""
    decisions: dict[str, Decision] = {}
    for line in lines:
        match = _DECISION.search(line.rstrip("\n"))
        if match is None:
            continue
        gpus = tuple(int(g) for g in match["gpus"].split(",") if g.isdigit())
        decisions[match["pod"]] = Decision(match["pod"], match["policy"], match["node"], gpus)
    return decisions


def read_decisions(log_path: Path) -> dict[str, Decision]:
    """The last decision per pod in the extender's log (empty when there is no log)."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            return parse_decisions(handle)
    except FileNotFoundError:
        return {}


@dataclass(frozen=True)
class Fidelity:
    """How many bound opted-in pods landed on the node the extender put first."""

    bound: int  # opted-in pods bound
    decided: int  # ... of which the extender logged a decision
    on_top_node: int  # ... and were bound to that decision's node
    misses: tuple[tuple[str, str, str], ...]  # (pod, decided node or "-", bound node), the first few

    @property
    def share(self) -> float:
        """On the top node / bound (a bound pod without a decision counts as a miss)."""
        return self.on_top_node / self.bound if self.bound else float("nan")


def fidelity(decisions: Mapping[str, Decision], bound_nodes: Mapping[str, str], keep_misses: int = 10) -> Fidelity:
    """Compare ``decisions`` with ``bound_nodes`` (opted-in pod -> the node it is bound to)."""
    on_top = decided = 0
    misses: list[tuple[str, str, str]] = []
    for pod, node in bound_nodes.items():
        decision = decisions.get(pod)
        if decision is not None:
            decided += 1
            if decision.node == node:
                on_top += 1
                continue
        if len(misses) < keep_misses:
            misses.append((pod, decision.node if decision else "-", node))
    return Fidelity(bound=len(bound_nodes), decided=decided, on_top_node=on_top, misses=tuple(misses))
