"""gpufleet certs: write the CA, the extender's server certificate, kube-scheduler's client
certificate and their Secrets (secrets.yaml) for mutual TLS on the extender's verbs.

Apply secrets.yaml (`kubectl apply -f OUT/secrets.yaml`), then deploy the existing-scheduler overlay:
the extender serves TLS with --tls-cert/--tls-key and accepts only clients of --client-ca; mount the
client Secret into kube-scheduler and point the extender's tlsConfig at it. Keep ca.key offline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gpufleet.scheduler.extender.pki import PkiOptions

    d = PkiOptions()
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into (created)")
    parser.add_argument("--service", default=d.service, help=f"the extender's Service (default {d.service})")
    parser.add_argument("--namespace", default=d.namespace, help=f"its namespace (default {d.namespace})")
    parser.add_argument("--scheduler-namespace", default=d.scheduler_namespace,
                        help=f"where kube-scheduler's client Secret goes (default {d.scheduler_namespace})")
    parser.add_argument("--days", type=int, default=d.days, help=f"validity in days (default {d.days})")
    parser.add_argument("--name", action="append", default=[], metavar="DNS_OR_IP",
                        help="another name for the server certificate (repeatable)")
    parser.add_argument("--force", action="store_true", help="overwrite certificates already in --out")


def run(args: argparse.Namespace) -> int:
    from gpufleet.scheduler.extender.pki import PkiOptions, write_pki

    if (args.out / "ca.key").exists() and not args.force:
        print(f"gpufleet certs: {args.out} already holds a CA; pass --force to replace it "
              "(clients trusting the old CA will be refused)", file=sys.stderr)
        return 2
    try:
        pki = write_pki(args.out, PkiOptions(args.service, args.namespace, args.scheduler_namespace, args.days,
                                             tuple(args.name)))
    except (ValueError, OSError) as err:
        print(f"gpufleet certs: {err}", file=sys.stderr)
        return 2
    print(f"wrote {pki.ca}, {pki.server_cert}, {pki.client_cert} (and keys) and {pki.secrets}")
    return 0
