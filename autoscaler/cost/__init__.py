"""GPU cost: the waste ledger, attribution, budgets and forecasts, and right-sizing recommendations.

Pure logic over recorded observations: no Kubernetes or gRPC I/O here, and no wall clock (callers pass
times in). The only file reading is in the loaders used by the CLI (``catalog``, ``profiles``,
``openb``). The live controller feeds the ledger with ``Ledger.add_sample`` and asks for
``Ledger.snapshot``; the CLI and the benchmark call ``fleet.recommend_fleet``.
"""
