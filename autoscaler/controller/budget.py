"""Disruption budgets: at most N actions and P% of the opted-in GPUs per rolling window, inside allowed
windows. The ledger of recent actions travels in the leader Lease's annotations, so a new leader keeps
counting where the old one stopped. No I/O here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from gpufleet.autoscaler.controller.config import BudgetConfig
from gpufleet.autoscaler.controller.cron import window_open
from gpufleet.autoscaler.controller.gate import Skip

_MAX_ENTRIES = 200  # bound on what goes into the Lease annotation


@dataclass(frozen=True, slots=True)
class Entry:
    at: float  # unix seconds
    gpus: int
    key: str  # the action's idempotency key
    root: str  # namespace/Kind/name


class Ledger:
    def __init__(self, config: BudgetConfig, schedules: list[Any] | None = None) -> None:
        self._config = config
        self._schedules = schedules or []
        self._entries: list[Entry] = []

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries)

    def prune(self, now: float) -> None:
        self._entries = [e for e in self._entries if now - e.at < self._config.window_s]

    def allows(self, gpus: int, opted_in_gpus: int, now: float) -> tuple[bool, Skip | None, str]:
        """Whether an action freeing ``gpus`` fits now, and if not, why."""
        if not window_open(self._schedules, now):
            return False, Skip.WINDOW, "outside every allowed window"
        self.prune(now)
        used_actions = len(self._entries)
        if used_actions >= self._config.max_actions:
            return False, Skip.BUDGET, (f"{used_actions} actions in the last {self._config.window_s:g}s "
                                        f"(budget {self._config.max_actions})")
        used = sum(e.gpus for e in self._entries)
        # GPUs freed in the window still count as opted in (their pods are gone from the count now)
        fleet = opted_in_gpus + used
        limit = max(1, math.floor(fleet * self._config.max_percent / 100.0))
        if self._config.max_percent <= 0:
            limit = 0
        if used + gpus > limit and not (used == 0 and limit >= 1):
            return False, Skip.BUDGET, (f"{used} + {gpus} GPUs would exceed {self._config.max_percent:g}% of "
                                        f"{fleet} opted-in GPUs ({limit})")
        return True, None, ""

    def record(self, entry: Entry) -> None:
        if any(e.key == entry.key for e in self._entries):
            return
        self._entries.append(entry)
        del self._entries[:-_MAX_ENTRIES]

    def has(self, key: str) -> bool:
        return any(e.key == key for e in self._entries)

    def to_json(self) -> str:
        return json.dumps([[round(e.at, 3), e.gpus, e.key, e.root] for e in self._entries], separators=(",", ":"))

    def merge_json(self, text: str | None) -> None:
        """Add the entries of a Lease annotation (another leader's), ignoring what cannot be read."""
        if not text:
            return
        try:
            rows = json.loads(text)
            for at, gpus, key, root in rows:
                self.record(Entry(float(at), int(gpus), str(key), str(root)))
        except (ValueError, TypeError):
            return
        self._entries.sort(key=lambda e: e.at)
