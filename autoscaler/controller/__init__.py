"""The reclaim controller (``gpufleet controller``): the live edge of idle-GPU reclaim.

It watches pods, namespaces, nodes and PDBs, reads every agent's sample stream, calls the reclaim
decision function (:func:`gpufleet.autoscaler.reclaim.decide`, the same one the backtest runs) and,
while it holds the leader Lease, gives notice and then scales, suspends or evicts. Everything that
decides is pure (``gate``, ``plan``, ``budget``); everything that talks to the API server is in
``actuator``, ``lease``, ``owners`` and ``undo``; the agents' streams are in ``agents``.
"""
