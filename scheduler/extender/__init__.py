"""The kube-scheduler extender: fragmentation- and price-aware scoring behind the HTTP extender contract.

Layers inside this package, bottom to top:

- pure parsing and logic, no I/O: ``quantity``, ``pods``, ``nodes``, ``pricing`` (reads only its
  packaged CSV), ``wire``, ``ledger``, ``state``, ``scoring``, ``preemption``, ``service``;
- the edges: ``kubeapi`` (the Kubernetes API behind the ``KubeAPI`` protocol), ``informer`` (list and
  watch into ``state``), ``events`` (rate-limited Kubernetes Events), ``metrics``, ``server`` (HTTP),
  ``app`` (wiring) and ``cli`` (``gpufleet extender``).

Nothing below the edges talks to the network or reads the clock directly (a ``Clock`` is passed in).
"""
