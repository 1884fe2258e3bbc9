"""A ReclaimPolicy object in the whole pass: real in-process agent over real gRPC (simulated GPUs), a
recording API. research/notebook-7f9c holds a GPU at 0 %; no annotation opts anything in here."""

from __future__ import annotations

from gpufleet.autoscaler.agent.app import Agent
from gpufleet.core import names

from .fakes import FakeAPI, pod
from .test_controller_pass import agent, controller, notices, passes  # noqa: F401  (agent: the fixture)


def unannotated_api() -> FakeAPI:
    api = FakeAPI()
    for name, labels in (("research", {"team": "a"}), ("ml", {"team": "b"})):
        api.add(f"/api/v1/namespaces/{name}", {"metadata": {"name": name, "labels": labels}})
    for ns, name in (("research", "notebook-7f9c"), ("research", "probe"), ("ml", "trainer-0"),
                     ("ml", "batch-infer"), ("ml", "stuck-job")):
        api.add(f"/api/v1/namespaces/{ns}/pods/{name}", pod(ns, name, f"uid-{name}"))
    return api


def reclaim_policy(generation: int, spec: dict) -> dict:
    return {"apiVersion": "gpufleet.io/v1alpha1", "kind": "ReclaimPolicy",
            "metadata": {"name": "research", "generation": generation, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"namespaceSelector": {"matchLabels": {"team": "a"}}, "detection": "window", "grace": "0s",
                     **spec}}


def test_a_policy_opts_a_namespace_in_with_its_mode_and_a_deleted_one_opts_it_out(agent: Agent) -> None:  # noqa: F811
    api = unannotated_api()
    c = controller(api, agent)
    try:
        passes(c, api, 3)
        assert notices(api, "notebook-7f9c") == 0 and not c.last_plans  # nothing opted in
        obj = reclaim_policy(1, {"mode": "Notify", "notice": "1h"})
        c.policies.apply("ADDED", obj)
        passes(c, api, 15, until=lambda: notices(api, "notebook-7f9c") == 1)
        assert notices(api, "notebook-7f9c") == 1
        notebook = api.objects["/api/v1/namespaces/research/pods/notebook-7f9c"]
        assert names.IDLE_SINCE in notebook["metadata"]["annotations"]
        assert {p.pod.namespace for p in c.last_plans} == {"research"}  # ml is not selected
        passes(c, api, 2)
        assert not api.writes("POST", "/eviction")  # Notify never acts, the 1h notice is the policy's
        c.policies.apply("DELETED", obj)
        passes(c, api, 2)
        assert not c.last_plans
    finally:
        c.pool.stop()


def test_an_annotated_pod_keeps_its_mode_and_takes_the_notice_of_the_policy_selecting_it(agent: Agent  # noqa: F811
                                                                                         ) -> None:
    api = unannotated_api()
    api.objects["/api/v1/namespaces/research/pods/notebook-7f9c"]["metadata"]["annotations"][names.RECLAIM] = "evict"
    c = controller(api, agent)  # --config notice: 1 s
    try:
        c.policies.apply("ADDED", reclaim_policy(1, {"mode": "Off", "notice": "1h"}))
        passes(c, api, 15, until=lambda: notices(api, "notebook-7f9c") == 1)
        message = next(e["message"] for e in api.events if e["reason"] == "IdleGPUNotice")
        assert "evict after 3600s" in message
        passes(c, api, 4)  # with the 1 s notice of --config it would be evicted by now
        assert not api.writes("POST", "/eviction")
    finally:
        c.pool.stop()
