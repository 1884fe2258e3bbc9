"""Run the kube-scheduler extender: fragmentation- and price-aware GPU placement over HTTP.

kube-scheduler calls POST {prefix}filter, prioritize, bind and preempt (urlPrefix
http://HOST:PORT/v1 with the default prefix); GET /healthz, /readyz (200 once the node, pod and
namespace watches have listed) and /metrics. With --kubeconfig (or in a pod, the service account) it
watches the cluster and serves nodeCacheCapable requests; with --standalone it needs no API access,
scores the Node objects a nodeCacheCapable=false request carries and answers names-only requests
neutrally (it cannot bind). Exit status: 0 after SIGTERM/SIGINT, 2 for bad options, 3 when the
Kubernetes credentials cannot be loaded or the address cannot be bound.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpufleet.scheduler.workload import WorkloadMix

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:8888"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"address for the verbs (and, without --metrics-listen, /metrics); port 0 picks "
                             f"one (default {DEFAULT_LISTEN})")
    parser.add_argument("--metrics-listen", default=None, metavar="HOST:PORT",
                        help="a second address serving only /metrics, /healthz and /readyz (e.g. 0.0.0.0:8889 "
                             "while the verbs stay on loopback)")
    parser.add_argument("--kubeconfig", default=None, metavar="PATH",
                        help="kubeconfig to watch the cluster with (default: in-cluster service account)")
    parser.add_argument("--standalone", action="store_true",
                        help="no API access: score full Node objects from requests; names-only requests get "
                             "neutral scores; bind is refused")
    parser.add_argument("--prefix", default="/v1/", help="path prefix of the verbs (default /v1/)")
    parser.add_argument("--max-body-bytes", type=int, default=64 * 1024 * 1024,
                        help="larger requests get 413 (default 64 MiB)")
    parser.add_argument("--assume-ttl", type=float, default=30.0, metavar="SECONDS",
                        help="how long a decision holds its GPUs before bind or the pod watch confirms it (default 30)")
    parser.add_argument("--interruption-penalty", type=float, default=1.0, metavar="GPU_HOURS",
                        help="cost policy: mean GPU-hours per GPU charged to non-interruptible pods on spot "
                             "nodes (default 1.0)")
    parser.add_argument("--events-per-second", type=float, default=2.0,
                        help="average rate of decision Events posted to the API (default 2; 0 turns them off)")
    parser.add_argument("--decide-in-filter", action=argparse.BooleanOptionalAction, default=True,
                        help="filter leaves an opted-in pod only its policy's top node, so kube-scheduler skips its "
                             "own scoring and the prioritize call (default; less CPU per pod). "
                             "--no-decide-in-filter: filter passes every node that fits and prioritize ranks them, "
                             "so soft preferences can outvote the extender at a low weight")
    parser.add_argument("--bind-backlog", type=int, default=32, metavar="N",
                        help="with more than N binds waiting on the API server, filter holds kube-scheduler's next "
                             "pod (up to 0.5 s) so binds do not pass its timeout (default 32; 0: never)")
    parser.add_argument("--workload-mix", metavar="PATH",
                        help="pod list CSV (openb trace columns: name, cpu_milli, memory_mib, num_gpu, gpu_milli) "
                             "whose typical pods FGD measures fragmentation against, instead of learning them "
                             "from running pods")
    parser.add_argument("--tls-cert", metavar="PATH", help="serve the verbs over TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", metavar="PATH", help="the private key of --tls-cert (PEM)")
    parser.add_argument("--client-ca", metavar="PATH",
                        help="accept only clients with a certificate from this CA (mutual TLS; needs --tls-cert "
                             "and --tls-key; `gpufleet certs` writes all three)")
    parser.add_argument("--ready-file", metavar="PATH",
                        help="write {\"pid\", \"port\"} as JSON here once serving")


def _address(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{option} {value!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def _workload_mix(path: str) -> WorkloadMix:
    """The typical pods of a pod list (the FGD paper's rule); ValueError says what is wrong."""
    from gpufleet.scheduler.trace import TraceError, read_pods
    from gpufleet.scheduler.workload import WorkloadMix

    try:
        return WorkloadMix.from_pods(read_pods(path))
    except TraceError as err:
        raise ValueError(f"--workload-mix: {err}") from err


def run(args: argparse.Namespace) -> int:
    import json
    import os
    from dataclasses import replace

    from gpufleet.core.kube.errors import KubeAPIError
    from gpufleet.scheduler.extender.app import ExtenderApp, ExtenderConfig
    from gpufleet.scheduler.extender.server import ServerError, TLSFiles

    try:
        host, port = _address(args.listen, "--listen")
        metrics_address = _address(args.metrics_listen, "--metrics-listen") if args.metrics_listen else None
        if args.assume_ttl <= 0 or args.interruption_penalty < 0 or args.events_per_second < 0 \
                or args.max_body_bytes <= 0:
            raise ValueError("--assume-ttl and --max-body-bytes must be > 0; --interruption-penalty and "
                             "--events-per-second >= 0")
        if args.standalone and args.kubeconfig:
            raise ValueError("--standalone and --kubeconfig exclude each other")
        tls_files = (args.tls_cert, args.tls_key, args.client_ca)
        if any(tls_files) and not all(tls_files):
            raise ValueError("--tls-cert, --tls-key and --client-ca go together (mutual TLS); "
                             "`gpufleet certs` writes all three")
        mix = _workload_mix(args.workload_mix) if args.workload_mix else None
    except ValueError as err:
        print(f"gpufleet extender: {err}", file=sys.stderr)
        return 2
    defaults = ExtenderConfig()
    config = replace(
        defaults,
        server=replace(defaults.server, prefix=args.prefix, max_body_bytes=args.max_body_bytes,
                       tls=TLSFiles(args.tls_cert, args.tls_key, args.client_ca) if args.tls_cert else None),
        state=replace(defaults.state, assume_ttl_s=args.assume_ttl),
        scoring=replace(defaults.scoring, interruption_penalty=args.interruption_penalty,
                        decide_in_filter=args.decide_in_filter),
        events=replace(defaults.events, rate_per_s=args.events_per_second),
        bind_backlog=args.bind_backlog,
    )
    api = None
    try:
        if not args.standalone:
            from gpufleet.core.kube.client import KubernetesAPI

            api = KubernetesAPI.connect(args.kubeconfig, user_agent="gpufleet-extender")
        app = ExtenderApp.build(host, port, api, config, metrics_address=metrics_address, mix=mix)
    except (KubeAPIError, ServerError) as err:
        print(f"gpufleet extender: {err}", file=sys.stderr)
        return 3
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    app.start()
    log.info("listening=%s:%d prefix=%s mode=%s", host, app.server.port, app.server.prefix,
             "standalone" if api is None else "cached")
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            json.dump({"pid": os.getpid(), "port": app.server.port}, f)
    stop.wait()
    app.stop()
    return 0
