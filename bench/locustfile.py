"""Locust load for the extender: what kube-scheduler sends, in both nodeCacheCapable modes.

Run through ``bench/extender_load.py`` (it starts the extender and sets the environment):

- ``GPUFLEET_BENCH_REQUESTS``: a JSON-lines file of pre-built requests, one ``{"pod", "names"}`` or
  ``{"pod", "nodes"}`` object per line (real-shaped pods; 500 names, or full Node objects);
- ``GPUFLEET_BENCH_SCENARIO``: ``cycle`` (filter, prioritize and bind per pod, as one scheduling and
  binding cycle) or ``prioritize`` (prioritize only).

Each simulated pod gets a fresh name and UID, so binds never collide.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid

from locust import FastHttpUser, constant, task

_SCENARIO = os.environ.get("GPUFLEET_BENCH_SCENARIO", "cycle")
_COUNTER = itertools.count()
_HEADERS = {"Content-Type": "application/json"}
_NAME, _UID = "GPUFLEET-POD-NAME", "GPUFLEET-POD-UID"


def _template(request: dict) -> tuple[str, str, bool]:
    """The ExtenderArgs body with placeholders for the pod's name and UID (filled per pod with two
    ``str.replace`` calls: the load generator must stay cheaper than the server it loads)."""
    pod = request["pod"]
    base = pod["metadata"]["name"]
    pod["metadata"]["name"] = _NAME
    pod["metadata"]["uid"] = _UID
    if "names" in request:
        args = {"Pod": pod, "Nodes": None, "NodeNames": request["names"]}
    else:
        args = {"Pod": pod, "Nodes": {"metadata": {}, "items": request["nodes"]}, "NodeNames": None}
    return json.dumps(args), base, "names" in request


with open(os.environ["GPUFLEET_BENCH_REQUESTS"]) as _lines:
    _TEMPLATES = [_template(json.loads(line)) for line in _lines]


def _top_host(reply: bytes) -> str | None:
    """The one host scored 10, found without decoding all 500 entries (the client must stay cheap)."""
    end = reply.find(b',"Score":10}')
    if end < 0:
        return None
    start = reply.rfind(b'{"Host":', 0, end)
    return json.loads(reply[start + 8:end])


class KubeScheduler(FastHttpUser):
    wait_time = constant(0)

    @task
    def schedule_one_pod(self) -> None:
        n = next(_COUNTER)
        template, base, names_mode = _TEMPLATES[n % len(_TEMPLATES)]
        name, uid = f"{base}-{n}", str(uuid.uuid4())
        body = template.replace(_NAME, name).replace(_UID, uid).encode()
        if _SCENARIO == "prioritize":
            self.client.post("/v1/prioritize", data=body, headers=_HEADERS, name="prioritize")
            return
        with self.client.post("/v1/filter", data=body, headers=_HEADERS, name="filter",
                              catch_response=True) as reply:
            if reply.status_code != 200:
                reply.failure(f"filter {reply.status_code}")
                return
            reply.success()
        with self.client.post("/v1/prioritize", data=body, headers=_HEADERS, name="prioritize",
                              catch_response=True) as reply:
            if reply.status_code != 200:
                reply.failure(f"prioritize {reply.status_code}")
                return
            best = _top_host(reply.content)
            reply.success()
        if best is None or not names_mode:
            return  # no room in the extender's model (kube-scheduler's filters would say so), or standalone
        binding = {"PodName": name, "PodNamespace": "bench", "PodUID": uid, "Node": best}
        with self.client.post("/v1/bind", data=json.dumps(binding).encode(), headers=_HEADERS, name="bind",
                              catch_response=True) as reply:
            if reply.status_code != 200 or reply.json().get("Error"):
                reply.failure(f"bind {reply.status_code} {reply.text[:100]}")
            else:
                reply.success()
