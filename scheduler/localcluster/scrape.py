"""Reading Prometheus metrics from the local cluster's components: kube-scheduler's /metrics (on its
secure port, open to unauthenticated reads of /metrics on loopback, see ``components``) and the
extender's.

``scrape(url)`` returns ``Samples``; ``Samples.total`` sums a series over the labels not matched,
``Samples.histogram`` returns cumulative buckets, and ``quantile`` interpolates inside a bucket the way
PromQL's ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from gpufleet.scheduler.localcluster import readiness


class ScrapeError(RuntimeError):
    """A /metrics endpoint did not answer, or answered something that is not Prometheus text."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


class Samples:
    """The samples of one scrape."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self._by_name: dict[str, list[Sample]] = {}
        for sample in samples:
            self._by_name.setdefault(sample.name, []).append(sample)

    @classmethod
    def parse(cls, text: str) -> Samples:
        try:
            return cls(Sample(s.name, dict(s.labels), float(s.value))
                       for family in text_string_to_metric_families(text) for s in family.samples)
        except (ValueError, TypeError) as err:
            raise ScrapeError(f"parsing Prometheus text: {err}") from err

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def select(self, name: str, **match: str) -> list[Sample]:
        return [s for s in self._by_name.get(name, ())
                if all(s.labels.get(k) == v for k, v in match.items())]

    def total(self, name: str, **match: str) -> float:
        """Sum of ``name`` over the series whose labels include ``match``."""
        return sum(s.value for s in self.select(name, **match))

    def histogram(self, name: str, **match: str) -> list[tuple[float, float]]:
        """Cumulative ``(upper bound, count)`` buckets of histogram ``name`` (without ``_bucket``),
        summed over the series matching ``match``, by ascending bound (+Inf last)."""
        counts: dict[float, float] = {}
        for sample in self.select(f"{name}_bucket", **match):
            bound = float(sample.labels["le"])
            counts[bound] = counts.get(bound, 0.0) + sample.value
        return sorted(counts.items())


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The ``q``-quantile (0..1) of cumulative ``buckets``, interpolated linearly inside its bucket
    (PromQL ``histogram_quantile``); NaN with no observations. A quantile in the +Inf bucket
    returns the largest finite bound."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def difference(after: list[tuple[float, float]], before: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Buckets observed between two scrapes of the same histogram."""
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def scrape(url: str, context: ssl.SSLContext | None = None, timeout: float = 10.0) -> Samples:
    """GET ``url`` and parse it; ``ScrapeError`` with the status when it is not a 200."""
    status, body = readiness.get(url, context, timeout=timeout)
    if status != 200:
        reason = "no connection" if status == 0 else f"HTTP {status}: {body[:200]!r}"
        raise ScrapeError(f"scraping {url}: {reason}; is the component running?")
    return Samples.parse(body.decode("utf-8", "replace"))
