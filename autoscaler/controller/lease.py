"""Leader election on a coordination.k8s.io/v1 Lease, written with GET / POST / PUT (client-go's rules).

Every replica observes; only the holder acts. Acquire: create the Lease, or take it over once its record
has not changed for ``duration_s`` as measured by *our* monotonic clock (so clock skew between replicas
does not matter). Renew every ``retry_s`` with a PUT carrying the resourceVersion read, so two replicas
racing for it cannot both win (the loser gets 409). A leader that has not renewed for
``renew_deadline_s`` stops acting, before anyone else may take over (``duration_s`` > deadline). The
leader writes the budget ledger into the Lease's annotations; a new leader reads it back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from gpufleet.autoscaler.controller.config import LeaseConfig
from gpufleet.core.clock import Clock
from gpufleet.core.kube.errors import Conflict, KubeAPIError

log = logging.getLogger(__name__)


class LeaseAPI(Protocol):
    def get(self, path: str) -> dict[str, Any] | None: ...

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...


def micro_time(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, api: LeaseAPI, identity: str, config: LeaseConfig, clock: Clock,
                 annotations: Callable[[], dict[str, str]] | None = None,
                 on_acquire: Callable[[dict[str, str]], None] | None = None) -> None:
        self._api = api
        self.identity = identity
        self._config = config
        self._clock = clock
        self._annotations = annotations or dict
        self._on_acquire = on_acquire
        self._leader = False
        self._renewed_mono = -1e18
        self._observed: tuple[str, str, str] | None = None  # (holder, renewTime, resourceVersion)
        self._observed_mono = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.transitions = 0

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self._config.namespace}/leases/{self._config.name}"

    def is_leader(self) -> bool:
        """True while we hold the Lease and renewed it within the renew deadline."""
        return self._leader and self._clock.monotonic() - self._renewed_mono < self._config.renew_deadline_s

    def step(self) -> bool:
        """One try to acquire or renew; returns whether we lead afterwards. Never raises for API errors."""
        try:
            self._step()
        except KubeAPIError as err:
            level = logging.DEBUG if isinstance(err, Conflict) else logging.WARNING
            log.log(level, "lease=%s identity=%s acquire/renew failed: %s", self._config.name, self.identity, err)
        if self._leader and not self.is_leader():
            log.warning("lease=%s identity=%s could not renew for %.0fs; stepping down", self._config.name,
                        self.identity, self._config.renew_deadline_s)
            self._leader = False
        return self.is_leader()

    def _spec(self, old: dict[str, Any] | None, now: float) -> dict[str, Any]:
        spec = dict((old or {}).get("spec") or {})
        held = spec.get("holderIdentity") == self.identity
        if not held:
            spec["acquireTime"] = micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if old else 0)
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = max(1, int(round(self._config.duration_s)))
        spec["renewTime"] = micro_time(now)
        return spec

    def _step(self) -> None:
        now, mono = self._clock.now(), self._clock.monotonic()
        lease = self._api.get(self.path)
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self._config.name, "namespace": self._config.namespace,
                                 "annotations": self._annotations()},
                    "spec": self._spec(None, now)}
            self._api.post(f"/apis/coordination.k8s.io/v1/namespaces/{self._config.namespace}/leases", body)
            self._won({}, mono)
            return
        meta = lease.get("metadata") or {}
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime") or ""), str(meta.get("resourceVersion") or ""))
        if record[:2] != (self._observed or ("", "", ""))[:2]:
            self._observed, self._observed_mono = record, mono
        if holder and holder != self.identity:
            if self._leader:
                log.warning("lease=%s taken by %s; stepping down", self._config.name, holder)
                self._leader = False
            duration = float(spec.get("leaseDurationSeconds") or self._config.duration_s)
            if mono - self._observed_mono < duration:
                return  # held and not expired
        annotations = dict(meta.get("annotations") or {})
        previous = dict(annotations)
        if holder == self.identity:
            annotations.update(self._annotations())
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {**meta, "annotations": annotations}, "spec": self._spec(lease, now)}
        self._api.put(self.path, body)  # resourceVersion in meta: 409 when someone else wrote first
        if holder == self.identity and self._leader:
            self._renewed_mono = mono
        else:  # taken over, or ours from before a restart (same pod name): read the old leader's ledger
            self._won(previous, mono)

    def _won(self, annotations: dict[str, str], mono: float) -> None:
        self._renewed_mono = mono
        was = self._leader
        self._leader = True
        self.transitions += 1
        log.info("lease=%s/%s acquired identity=%s", self._config.namespace, self._config.name, self.identity)
        if self._on_acquire is not None and not was:
            self._on_acquire(annotations)

    def release(self) -> None:
        """Give the Lease up on shutdown so another replica takes over at once."""
        if not self.is_leader():
            return
        self._leader = False
        try:
            lease = self._api.get(self.path)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = dict(lease["spec"])
            spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=micro_time(self._clock.now()))
            self._api.put(self.path, {**lease, "spec": spec})
            log.info("lease=%s released identity=%s", self._config.name, self.identity)
        except KubeAPIError as err:
            log.warning("lease=%s release failed: %s", self._config.name, err)

    def run(self, on_change: Callable[[bool], None] | None = None) -> None:
        last = None
        while not self._stop.is_set():
            leading = self.step()
            if leading != last and on_change is not None:
                on_change(leading)
            last = leading
            self._stop.wait(self._config.retry_s)

    def start(self, on_change: Callable[[bool], None] | None = None) -> LeaderElector:
        self._thread = threading.Thread(target=self.run, args=(on_change,), name="gpufleet-lease", daemon=True)
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if release:
            self.release()
