"""The extender's exception families, one per boundary.

``WireError``: a request or object that breaks the wire contract (kube-scheduler's JSON, a Pod or a
Node); it carries every problem found, each with its JSON path. Failures talking to the Kubernetes
API are :mod:`gpufleet.core.kube.errors` (``Conflict`` on a Binding: the pod is already bound).
"""

from __future__ import annotations

from collections.abc import Sequence


class ExtenderError(Exception):
    """Base of everything the extender raises on purpose."""


class WireError(ExtenderError, ValueError):
    """Invalid input; ``problems`` lists ``path: message`` strings."""

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems[:10]) + (" ..." if len(self.problems) > 10 else ""))


class Problems:
    """Collects ``path: message`` problems while walking a JSON object, then raises them together."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        if len(self.items) < 100:
            self.items.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise WireError(self.items)


def as_dict(value: object, path: str, problems: Problems) -> dict:
    """``value`` if it is a JSON object; None counts as empty (Go's null for omitted structs)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    problems.add(path, f"expected an object, got {type(value).__name__}")
    return {}


def as_list(value: object, path: str, problems: Problems) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    problems.add(path, f"expected an array, got {type(value).__name__}")
    return []


def as_str(value: object, path: str, problems: Problems, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, str):
        return value
    problems.add(path, f"expected a string, got {type(value).__name__}")
    return default


def str_map(value: object, path: str, problems: Problems) -> dict[str, str]:
    """A map[string]string such as labels or annotations; wrong-typed entries are reported."""
    raw = as_dict(value, path, problems)
    out: dict[str, str] = {}
    for key, item in raw.items():
        if isinstance(item, str):
            out[key] = item
        else:
            problems.add(f"{path}.{key}", f"expected a string, got {type(item).__name__}")
    return out
