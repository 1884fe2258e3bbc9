"""The Kubernetes API as gpufleet's services use it, behind small protocols so tests use recording fakes.

``KubeAPI`` is what the informers need (paginated list and watch of a resource) plus what bind and
events need (read a pod, post a Binding, post an Event); ``KubernetesAPI`` implements it, and the
generic verbs (``get``, ``post``, ``put``, ``patch``, ``delete``) the controller uses, with the official ``kubernetes``
client's configuration (kubeconfig or in-cluster: bearer token and its refresh hook, client
certificates, CA, proxy). Requests go through the lean HTTP/1.1 client of ``transport`` (urllib3, the
API client's own pool, only through a proxy) with bodies encoded and replies decoded by msgspec: the
generated models cost about a millisecond per pod to build and would drop fields we read, and its
per-request machinery (parameter sanitising, URL building) was a fifth of the extender's CPU. Every
failure surfaces as ``KubeAPIError`` (``WatchExpired`` for 410 Gone, ``Conflict`` for 409).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import msgspec

from gpufleet.core.kube.errors import Conflict, KubeAPIError, WatchExpired
from gpufleet.core.kube.transport import MAX_IDLE, Reply, Transport

log = logging.getLogger(__name__)

#: Cluster-wide collection path of each resource the services list or watch.
PATHS = {
    "nodes": "/api/v1/nodes",
    "pods": "/api/v1/pods",
    "bound-pods": "/api/v1/pods",
    "namespaces": "/api/v1/namespaces",
    "poddisruptionbudgets": "/apis/policy/v1/poddisruptionbudgets",
    "deployments": "/apis/apps/v1/deployments",
    "statefulsets": "/apis/apps/v1/statefulsets",
    "replicasets": "/apis/apps/v1/replicasets",
    "jobs": "/apis/batch/v1/jobs",
    "endpointslices": "/apis/discovery.k8s.io/v1/endpointslices",
}
#: Finished pods hold nothing (kube-scheduler's own informer filters the same way); a pod that
#: finishes leaves the selection, which a watch reports as DELETED. ``bound-pods`` also leaves out pods
#: not bound yet (the extender's view: a pod being scheduled comes in kube-scheduler's request, and
#: enters the watch as ADDED once bound, one event fewer per pod for the API server and the extender).
SELECTORS = {"pods": "status.phase!=Succeeded,status.phase!=Failed",
             "bound-pods": "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"}
LIST_PAGE = 500
#: Connections urllib3 keeps to the API server through a proxy (the transport keeps as many, ``MAX_IDLE``):
#: as many as the extender lets binds run at once (``max_binds_in_flight``), or each bind past the
#: pool's size pays a TLS handshake for a connection thrown away after one request.
POOL_SIZE = MAX_IDLE
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class ListWatch(Protocol):
    """What an informer needs; ``resource`` is a key of ``PATHS`` or a collection path (``/api/...``)."""

    def list(self, resource: str) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``resource`` and the list's resourceVersion."""
        ...

    def watch(self, resource: str, resource_version: str, timeout_s: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) events after ``resource_version``: ADDED, MODIFIED, DELETED, BOOKMARK."""
        ...


class KubeAPI(ListWatch, Protocol):

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]) -> None: ...

    def create_event(self, namespace: str, body: dict[str, Any]) -> None: ...


def binding_body(namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]) -> dict[str, Any]:
    """A v1 Binding. The API server copies its annotations onto the pod in the same write that sets
    ``spec.nodeName``, and checks ``metadata.uid`` so a pod recreated under the same name is not bound."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if uid:
        meta["uid"] = uid
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Binding", "metadata": meta,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}


class KubernetesAPI:
    def __init__(self, api_client: Any, request_timeout_s: float = 30.0) -> None:
        self._client = api_client
        self._timeout = request_timeout_s
        try:
            self._transport = Transport.for_configuration(api_client.configuration)
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            raise KubeAPIError(f"loading the API server's TLS settings: {err}") from err

    @classmethod
    def connect(cls, kubeconfig: str | None, user_agent: str = "gpufleet") -> KubernetesAPI:
        """From a kubeconfig file, else the pod's service account (in-cluster)."""
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        try:
            cfg = client.Configuration()
            if kubeconfig:
                config.load_kube_config(config_file=kubeconfig, client_configuration=cfg, persist_config=False)
            else:
                config.load_incluster_config(client_configuration=cfg)
            # Through a proxy requests go by urllib3: with the default pool (5 x CPUs) a burst of binds
            # overflows it and every overflowing bind pays a new TLS handshake on both sides.
            cfg.connection_pool_maxsize = POOL_SIZE
            api_client = client.ApiClient(cfg)
        except (ConfigException, OSError, ValueError) as err:
            where = kubeconfig or "the in-cluster service account"
            raise KubeAPIError(f"loading Kubernetes credentials from {where}: {err}") from err
        api_client.user_agent = user_agent
        return cls(api_client)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._client.close()

    def _headers(self, content_type: str | None) -> dict[str, str]:
        """What the API client's ``call_api`` would send: defaults (User-Agent), cookie, and the
        configuration's bearer token, refreshed by its hook."""
        client = self._client
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        headers.update(client.default_headers)
        if client.cookie:
            headers["Cookie"] = client.cookie
        token = client.configuration.auth_settings().get("BearerToken")
        if token and token["value"]:
            headers[token["key"]] = token["value"]
        return headers

    def _exchange(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
                  content_type: str = "application/json", timeout_s: float | None = None,
                  stream: bool = False) -> tuple[Reply, Iterator[bytes]]:
        """One request: the reply (its body unless ``stream``) and, for a 2xx ``stream``, the body's chunks.
        Raises KubeAPIError for a failed request or a non-2xx reply."""
        import urllib3

        target = path + ("?" + urlencode(query, safe="/", quote_via=quote) if query else "")
        timeout = timeout_s or self._timeout
        try:
            headers = self._headers(None if body is None else content_type)
            data = None if body is None else _encode(body)
            if self._transport is not None:
                if stream:
                    reply, chunks = self._transport.stream(method, target, headers, timeout)
                else:
                    reply, chunks = self._transport.request(method, target, headers, data, timeout), iter(())
            else:  # a proxy: the API client's urllib3 pool
                response = self._client.rest_client.pool_manager.request(
                    method, self._client.configuration.host + target, body=data, headers=headers,
                    timeout=urllib3.Timeout(connect=min(10.0, timeout), read=timeout), preload_content=False)
                streaming = stream and 200 <= response.status < 300
                reply = Reply(response.status, response.reason, b"" if streaming else response.data)
                chunks = _closing(response) if streaming else iter(())
                if not streaming:
                    response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as err:
            raise KubeAPIError(f"{method} {path}: {err}") from err
        if 200 <= reply.status < 300:
            return reply, chunks
        text = reply.body.decode("utf-8", "replace")[:500]
        message = f"{method} {path}: {reply.status} {reply.reason}: {text}"
        if reply.status == 410:
            raise WatchExpired(message, 410)
        if reply.status == 409:
            raise Conflict(message, 409)
        raise KubeAPIError(message, reply.status)

    def _json(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
              content_type: str = "application/json") -> Any:
        data = self._exchange(method, path, query, body, content_type)[0].body
        try:
            return _decode(data)
        except ValueError as err:
            raise KubeAPIError(f"{method} {path}: reply is not JSON: {err}") from err

    def list(self, resource: str) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": LIST_PAGE, **_selector(resource)}
        while True:
            doc = self._json("GET", _path(resource), query)
            items.extend(doc.get("items") or [])
            meta = doc.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion") or "")
            query = {"limit": LIST_PAGE, "continue": meta["continue"], **_selector(resource)}

    def watch(self, resource: str, resource_version: str, timeout_s: int) -> Iterator[tuple[str, dict[str, Any]]]:
        query = {"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": resource_version,
                 "timeoutSeconds": timeout_s, **_selector(resource)}
        _, chunks = self._exchange("GET", _path(resource), query, timeout_s=timeout_s + 30.0, stream=True)
        try:
            for line in _lines(chunks):
                try:
                    event = _decode(line)
                except ValueError as err:
                    raise KubeAPIError(f"watch {resource}: unreadable event: {err}") from err
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    code = obj.get("code")
                    message = f"watch {resource}: {code} {obj.get('reason')}: {obj.get('message')}"
                    raise WatchExpired(message, 410) if code == 410 else KubeAPIError(message, code)
                yield kind, obj
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a stream left mid-way closes its connection

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when it does not exist (404)."""
        try:
            return self._json("GET", path)
        except KubeAPIError as err:
            if err.status == 404:
                return None
            raise

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", path, body=body)

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the object at ``path``; with ``metadata.resourceVersion`` set, ``Conflict`` when it moved."""
        return self._json("PUT", path, body=body)

    def delete(self, path: str) -> None:
        """Delete the object at ``path``; a missing object is not an error."""
        try:
            self._exchange("DELETE", path)
        except KubeAPIError as err:
            if err.status != 404:
                raise

    def patch(self, path: str, body: Any, patch_type: str = "merge") -> dict[str, Any]:
        """PATCH with a JSON merge patch (``merge``) or a JSON patch list (``json``)."""
        content = {"merge": "application/merge-patch+json", "json": "application/json-patch+json"}[patch_type]
        return self._json("PATCH", path, body=body, content_type=content)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"/api/v1/namespaces/{namespace}/pods/{name}")

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]) -> None:
        """Post a Binding; ``Conflict`` when the pod is already bound."""
        body = binding_body(namespace, name, uid, node, annotations)
        self._exchange("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/binding", body=body)

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        self._exchange("POST", f"/api/v1/namespaces/{namespace}/events", body=body)


def _closing(response: Any) -> Iterator[bytes]:
    """A urllib3 streaming response's chunks; closed (not pooled) when left mid-way."""
    try:
        yield from response.stream(None, decode_content=False)
    finally:
        response.close()


def _path(resource: str) -> str:
    if resource.startswith("/"):
        return resource
    try:
        return PATHS[resource]
    except KeyError:
        raise KubeAPIError(f"no API path known for resource {resource!r}; pass a collection path") from None


def _selector(resource: str) -> dict[str, str]:
    return {"fieldSelector": SELECTORS[resource]} if resource in SELECTORS else {}


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Newline-separated watch events from a streaming body, without re-copying the buffer."""
    import urllib3

    pending = b""
    try:
        for chunk in chunks:
            pending += chunk
            if b"\n" not in chunk:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield line
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise KubeAPIError(f"watch stream broke: {err}") from err
    if pending.strip():
        yield pending
