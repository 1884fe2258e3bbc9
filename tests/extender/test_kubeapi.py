"""``KubernetesAPI`` over a fake API server on loopback: paginated lists, chunked watch streams, 410,
Bindings with their annotations, 409 as Conflict, Events; through the official client's transport."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from gpufleet.core.kube.client import KubernetesAPI
from gpufleet.core.kube.errors import Conflict, KubeAPIError, WatchExpired

from . import payloads as P


class FakeAPIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict, object]] = []
        self.headers: list[dict[str, str]] = []
        self.peer_certs: list[dict | None] = []
        self.peers: list[tuple[str, int]] = []  # the client's address of each request: one per connection
        self.watch_lines: list[bytes] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: FakeAPIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> None:
        self.server.headers.append({k.lower(): v for k, v in self.headers.items()})
        self.server.peers.append(self.client_address)
        getpeercert = getattr(self.connection, "getpeercert", None)
        self.server.peer_certs.append(getpeercert() if getpeercert else None)

    def do_GET(self) -> None:
        self._record()
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.requests.append(("GET", url.path, query, None))
        if query.get("watch") == "true":
            if query.get("resourceVersion") == "1":
                self._send(410, {"kind": "Status", "code": 410, "reason": "Expired"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for line in self.server.watch_lines:
                for piece in (line[:7], line[7:] + b"\n"):  # events split across chunks
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        if url.path == "/api/v1/nodes":
            if "continue" not in query:
                self._send(200, {"metadata": {"resourceVersion": "50", "continue": "page2"},
                                 "items": [P.node("gpu-000")]})
            else:
                self._send(200, {"metadata": {"resourceVersion": "50"}, "items": [P.node("gpu-001")]})
        elif url.path == "/api/v1/namespaces/ml/pods/present":
            self._send(200, P.pod("present"))
        else:
            self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

    def do_POST(self) -> None:
        self._record()
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(("POST", url.path, {}, body))
        if url.path.endswith("/taken/binding"):
            self._send(409, {"kind": "Status", "code": 409, "reason": "Conflict",
                             "message": "pod taken is already assigned to node gpu-001"})
        elif url.path.endswith("/broken/binding"):
            self._send(500, {"kind": "Status", "code": 500, "message": "etcd timeout"})
        else:
            self._send(201, {"kind": "Status", "status": "Success", "code": 201})


@pytest.fixture
def fake_api():
    server = FakeAPIServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{server.server_address[1]}"
    api = KubernetesAPI(client.ApiClient(cfg))
    try:
        yield server, api
    finally:
        api.close()
        server.shutdown()
        server.server_close()


def test_lists_follow_continue_tokens_and_return_the_resource_version(fake_api):
    server, api = fake_api
    items, version = api.list("nodes")
    assert [i["metadata"]["name"] for i in items] == ["gpu-000", "gpu-001"] and version == "50"
    assert [r[2].get("continue") for r in server.requests] == [None, "page2"]
    assert server.requests[0][2]["limit"] == "500"


def test_pods_are_listed_and_watched_without_finished_ones(fake_api):
    server, api = fake_api
    with pytest.raises(KubeAPIError):  # the fake has no pod list; only the query matters here
        api.list("pods")
    assert server.requests[0][2]["fieldSelector"] == "status.phase!=Succeeded,status.phase!=Failed"


def test_a_watch_streams_events_split_across_chunks_and_410_is_watch_expired(fake_api):
    server, api = fake_api
    server.watch_lines = [json.dumps({"type": "ADDED", "object": P.node("gpu-002")}).encode(),
                          json.dumps({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "77"}}}).encode()]
    events = list(api.watch("nodes", "50", timeout_s=5))
    assert [(kind, obj["metadata"].get("name")) for kind, obj in events] == [("ADDED", "gpu-002"), ("BOOKMARK", None)]
    query = server.requests[-1][2]
    assert (query["resourceVersion"], query["allowWatchBookmarks"], query["timeoutSeconds"]) == ("50", "true", "5")
    with pytest.raises(WatchExpired):
        list(api.watch("nodes", "1", timeout_s=5))
    server.watch_lines = [json.dumps({"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}).encode()]
    with pytest.raises(WatchExpired):
        list(api.watch("nodes", "50", timeout_s=5))


def test_bind_posts_a_binding_with_uid_and_annotations_and_maps_conflicts(fake_api):
    server, api = fake_api
    api.bind("ml", "trainer-0", "uid-1", "gpu-003", {"gpufleet.io/gpu-ids": "0,1"})
    method, path, _, body = server.requests[-1]
    assert (method, path) == ("POST", "/api/v1/namespaces/ml/pods/trainer-0/binding")
    assert body == {"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": "trainer-0", "namespace": "ml", "uid": "uid-1",
                                 "annotations": {"gpufleet.io/gpu-ids": "0,1"}},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": "gpu-003"}}
    with pytest.raises(Conflict):
        api.bind("ml", "taken", "", "gpu-003", {})
    with pytest.raises(KubeAPIError) as caught:
        api.bind("ml", "broken", "", "gpu-003", {})
    assert caught.value.status == 500 and "etcd timeout" in str(caught.value)


def test_get_pod_returns_none_for_404_and_events_are_posted(fake_api):
    server, api = fake_api
    assert api.get_pod("ml", "present")["metadata"]["name"] == "present"
    assert api.get_pod("ml", "absent") is None
    api.create_event("ml", {"reason": "GpufleetPlacement"})
    assert server.requests[-1][1] == "/api/v1/namespaces/ml/events"


def test_an_unreachable_api_server_is_a_kube_api_error():
    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    cfg.retries = False
    api = KubernetesAPI(client.ApiClient(cfg), request_timeout_s=2)
    try:
        with pytest.raises(KubeAPIError):
            api.list("nodes")
    finally:
        api.close()


def test_connect_reads_a_kubeconfig_and_keeps_a_connection_per_concurrent_bind(fake_api, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    server, _ = fake_api
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
    api = KubernetesAPI.connect(str(kubeconfig))
    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: api.bind("ml", f"p-{i}", "", "gpu-000", {}), range(64)))
        assert sum(1 for r in server.requests if r[1].endswith("/binding")) == 64
        assert len(set(server.peers)) <= 16  # each connection kept for the next bind, none opened per bind
    finally:
        api.close()


def test_requests_carry_the_bearer_token_refreshed_by_the_hook_and_the_user_agent(fake_api):
    server, _ = fake_api
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{server.server_address[1]}"
    cfg.api_key = {"authorization": "token-0"}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    refreshed = []

    def refresh(config) -> None:  # as the kubeconfig loader's exec/OIDC hook and the in-cluster token reload do
        refreshed.append(1)
        config.api_key["authorization"] = f"token-{len(refreshed)}"

    cfg.refresh_api_key_hook = refresh
    api_client = client.ApiClient(cfg)
    api_client.user_agent = "gpufleet-test"
    api = KubernetesAPI(api_client)
    try:
        api.bind("ml", "trainer-0", "", "gpu-000", {})
        api.get_pod("ml", "present")
    finally:
        api.close()
    assert [h["authorization"] for h in server.headers] == ["Bearer token-1", "Bearer token-2"]
    assert {h["user-agent"] for h in server.headers} == {"gpufleet-test"}
    assert server.headers[0]["content-type"] == "application/json" and "content-type" not in server.headers[1]
    assert all(h["accept"] == "application/json" for h in server.headers)


def test_connect_presents_the_kubeconfig_client_certificate_and_checks_the_server_against_its_ca(fake_api, tmp_path):
    import ssl

    from gpufleet.scheduler.extender.pki import write_pki

    server, _ = fake_api
    pki = write_pki(tmp_path / "pki")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"https://127.0.0.1:{server.server_address[1]}",
                                                  "certificate-authority": str(pki.ca)}}],
        "users": [{"name": "fake", "user": {"client-certificate": str(pki.client_cert),
                                             "client-key": str(pki.client_key), "token": "secret-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
    api = KubernetesAPI.connect(str(kubeconfig))
    try:
        items, _ = api.list("nodes")
    finally:
        api.close()
    assert [i["metadata"]["name"] for i in items] == ["gpu-000", "gpu-001"]
    subject = dict(pair[0] for pair in server.peer_certs[0]["subject"])
    assert subject["commonName"] == "kube-scheduler"
    assert server.headers[0]["authorization"] == "Bearer secret-token"
