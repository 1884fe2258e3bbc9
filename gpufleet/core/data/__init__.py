"""Data shipped inside the package: the default GPU instance price catalog (``gpu-instance-prices.csv``,
provenance in ``gpu-instance-prices.SOURCES.md``). Read with ``importlib.resources``; no code here."""
