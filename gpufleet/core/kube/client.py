"""The Kubernetes API as gpufleet's services use it, behind small protocols so tests use recording fakes.

``KubeAPI`` is what the informers need (paginated list and watch of a resource) plus what bind and
events need (read a pod, post a Binding, post an Event); ``KubernetesAPI`` implements it, and the
generic verbs (``get``, ``post``, ``put``, ``patch``, ``delete``) the controller uses, with the official ``kubernetes``
client's configuration (kubeconfig or in-cluster: bearer token and its refresh hook, client
certificates, CA, proxy). Requests go straight through that client's urllib3 pool with bodies
encoded and replies decoded by msgspec: the generated models cost about a millisecond per pod to
build and would drop fields we read, and its per-request machinery (parameter sanitising, URL
building) was a fifth of the extender's CPU. Every failure surfaces as ``KubeAPIError``
(``WatchExpired`` for 410 Gone, ``Conflict`` for 409).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import msgspec

from gpufleet.core.kube.errors import Conflict, KubeAPIError, WatchExpired

log = logging.getLogger(__name__)

#: Cluster-wide collection path of each resource the services list or watch.
PATHS = {
    "nodes": "/api/v1/nodes",
    "pods": "/api/v1/pods",
    "namespaces": "/api/v1/namespaces",
    "poddisruptionbudgets": "/apis/policy/v1/poddisruptionbudgets",
    "deployments": "/apis/apps/v1/deployments",
    "statefulsets": "/apis/apps/v1/statefulsets",
    "replicasets": "/apis/apps/v1/replicasets",
    "jobs": "/apis/batch/v1/jobs",
    "endpointslices": "/apis/discovery.k8s.io/v1/endpointslices",
}
#: Finished pods hold nothing (kube-scheduler's own informer filters the same way); a pod that
#: finishes leaves the selection, which a watch reports as DELETED.
SELECTORS = {"pods": "status.phase!=Succeeded,status.phase!=Failed"}
LIST_PAGE = 500
#: Connections kept to the API server (binds in flight at once, watches, events): as many as the
#: extender lets binds run at once (``max_binds_in_flight``), or each bind past the pool's size pays a
#: TLS handshake for a connection thrown away after one request.
POOL_SIZE = 256
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
            # Binds run on one thread per kube-scheduler connection; with the default pool (5 x CPUs)
            # a burst overflows it and every overflowing bind pays a new TLS handshake on both sides.
            cfg.connection_pool_maxsize = POOL_SIZE
            api_client = client.ApiClient(cfg)
        except (ConfigException, OSError, ValueError) as err:
            where = kubeconfig or "the in-cluster service account"
            raise KubeAPIError(f"loading Kubernetes credentials from {where}: {err}") from err
        api_client.user_agent = user_agent
        return cls(api_client)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
              timeout: Any = None, content_type: str = "application/json") -> Any:
        """One request through the API client's pool, with the headers its ``call_api`` would send
        (defaults, cookie, the configuration's bearer token, refreshed by its hook); returns the
        urllib3 response (2xx) or raises KubeAPIError. ``timeout``: seconds in all, or (connect, read)."""
        import urllib3

        client = self._client
        config = client.configuration
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        headers.update(client.default_headers)
        if client.cookie:
            headers["Cookie"] = client.cookie
        url = config.host + path
        if query:
            url += "?" + urlencode(query, safe="/", quote_via=quote)
        timeout = timeout or self._timeout
        if isinstance(timeout, tuple):
            timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        else:
            timeout = urllib3.Timeout(total=timeout)
        try:
            token = config.auth_settings().get("BearerToken")
            if token and token["value"]:
                headers[token["key"]] = token["value"]
            response = client.rest_client.pool_manager.request(
                method, url, body=None if body is None else _encode(body), headers=headers, timeout=timeout,
                preload_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise KubeAPIError(f"{method} {path}: {err}") from err
        if 200 <= response.status < 300:
            return response
        text = response.data.decode("utf-8", "replace")[:500]
        response.release_conn()
        status = response.status
        if status == 410:
            raise WatchExpired(f"{method} {path}: 410 Gone: {text}", status)
        if status == 409:
            raise Conflict(f"{method} {path}: 409 Conflict: {text}", status)
        raise KubeAPIError(f"{method} {path}: {status} {response.reason}: {text}", status)

    def _json(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        response = self._call(method, path, query, body)
        data = response.data
        response.release_conn()
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
        response = self._call("GET", _path(resource), query, timeout=(10.0, timeout_s + 30.0))
        try:
            for line in _lines(response):
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
            response.close()  # a stream left mid-way must not go back to the pool

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
            _done(self._call("DELETE", path))
        except KubeAPIError as err:
            if err.status != 404:
                raise

    def patch(self, path: str, body: Any, patch_type: str = "merge") -> dict[str, Any]:
        """PATCH with a JSON merge patch (``merge``) or a JSON patch list (``json``)."""
        content = {"merge": "application/merge-patch+json", "json": "application/json-patch+json"}[patch_type]
        response = self._call("PATCH", path, body=body, content_type=content)
        data = response.data
        response.release_conn()
        return _decode(data)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"/api/v1/namespaces/{namespace}/pods/{name}")

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]) -> None:
        """Post a Binding; ``Conflict`` when the pod is already bound."""
        body = binding_body(namespace, name, uid, node, annotations)
        _done(self._call("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/binding", body=body))

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        _done(self._call("POST", f"/api/v1/namespaces/{namespace}/events", body=body))


def _done(response: Any) -> None:
    """Read the rest of a reply before its connection goes back to the pool (an unread body would be
    taken for the next reply on that connection)."""
    _ = response.data
    response.release_conn()


def _path(resource: str) -> str:
    if resource.startswith("/"):
        return resource
    try:
        return PATHS[resource]
    except KeyError:
        raise KubeAPIError(f"no API path known for resource {resource!r}; pass a collection path") from None


def _selector(resource: str) -> dict[str, str]:
    return {"fieldSelector": SELECTORS[resource]} if resource in SELECTORS else {}


def _lines(response: Any) -> Iterator[bytes]:
    """Newline-separated watch events from a streaming response, without re-copying the buffer."""
    import urllib3

    pending = b""
    try:
        for chunk in response.stream(None, decode_content=False):
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
