"""Placement policies, one module each, registered in ``POLICIES`` by name: the FGD paper's six and
the extender's binpack, spread and cost. The simulator and the extender both take them from here.

``make_policy(name, mix=..., rng=...)`` builds one; every policy scores all nodes for a pod in one call
(see ``base.Policy``), and ``base.select_node`` / ``base.choose_gpus`` turn scores into a placement.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gpufleet.scheduler.policies import (
    bestfit,
    binpack,
    clustering,
    cost,
    dotprod,
    fgd,
    fgd_strand,
    packing,
    random_fit,
    spread,
)
from gpufleet.scheduler.policies.base import NodeScores, Policy, choose_gpus, select_node
from gpufleet.scheduler.workload import WorkloadMix

# The paper's order: 01-Random .. 06-FGD.
POLICIES: dict[str, Callable[..., Policy]] = {
    random_fit.NAME: lambda mix, rng, **_: random_fit.RandomPolicy(rng),
    dotprod.NAME: lambda **_: dotprod.DotProductPolicy(),
    clustering.NAME: lambda **_: clustering.ClusteringPolicy(),
    packing.NAME: lambda **_: packing.PackingPolicy(),
    bestfit.NAME: lambda **_: bestfit.BestFitPolicy(),
    fgd.NAME: lambda mix, options=None, **_: fgd.FGDPolicy(mix, options or fgd.FGDOptions()),
    # The extender's own: binpack, spread, cost.
    binpack.NAME: lambda **_: binpack.BinpackPolicy(),
    spread.NAME: lambda **_: spread.SpreadPolicy(),
    cost.NAME: lambda mix, cost_options=None, **_: cost.CostPolicy(mix, cost_options or cost.CostOptions()),
    # Beyond the paper: FGD plus CPU stranding and a look-ahead on shares (docs/designs/012-fgd-strand.md).
    fgd_strand.NAME: lambda mix, **_: fgd_strand.StrandPolicy(mix),
}
#: The FGD paper's six, by the names its results use.
PAPER_NAMES = dict(zip(list(POLICIES)[:6], ["01-Random", "02-DotProd", "03-GpuClustering", "04-GpuPacking",
                                            "05-BestFit", "06-FGD"]))
#: Policies that need the workload mix.
NEEDS_MIX = {fgd.NAME, cost.NAME, fgd_strand.NAME}


def make_policy(name: str, mix: WorkloadMix | None = None, rng: np.random.Generator | None = None,
                **options) -> Policy:
    """Build the policy called ``name``; FGD and cost need ``mix``, Random needs ``rng``."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    if name in NEEDS_MIX and mix is None:
        raise ValueError(f"the {name} policy needs a workload mix")
    return POLICIES[name](mix=mix, rng=rng if rng is not None else np.random.default_rng(0), **options)


__all__ = ["PAPER_NAMES", "POLICIES", "NodeScores", "Policy", "choose_gpus", "make_policy", "select_node"]
