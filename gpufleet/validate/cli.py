"""Check a gpufleet config repository before merge: `gpufleet validate PATH...`.

Every YAML document under PATH goes to a throwaway kube-apiserver (the local cluster's binary, with
gpufleet's CRDs and the repository's own CRDs installed) as a server-side dry run with strict field
validation, so schemas, unknown or duplicate fields and CEL rules are judged exactly as the cluster
would judge them; then the cross-object rules run (team and cost-center labels on opted-in
namespaces, budgets naming existing teams, no reclaim policy selecting kube-system, one placement
policy per namespace). Each problem is printed as FILE:LINE: OBJECT: FIELD: MESSAGE [CHECK].

Exit status: 0 all good, 1 violations, 2 unreadable input (missing file, bad YAML) or no API server
binaries (build them with deploy/local/build.sh, or point GPUFLEET_BIN_DIR at them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="YAML files or folders (recursive)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--bin-dir", type=Path, default=None,
                        help="folder with etcd and kube-apiserver (default: $GPUFLEET_BIN_DIR or the build.sh cache)")
    parser.add_argument("--workers", type=int, default=8, help="parallel dry-run requests (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from gpufleet.scheduler.localcluster.binaries import BinariesMissingError
    from gpufleet.validate.apiserver import ServerError
    from gpufleet.validate.checker import check
    from gpufleet.validate.documents import UnreadableInput

    try:
        report = check(args.paths, bin_dir=args.bin_dir, workers=args.workers)
    except UnreadableInput as err:
        print(f"gpufleet validate: {err}", file=sys.stderr)
        return 2
    except (BinariesMissingError, ServerError) as err:
        print(f"gpufleet validate: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(report.to_json())
    else:
        for item in report.findings:
            print(item.text())
        verdict = f"{len(report.findings)} problem(s)" if report.findings else "all valid"
        print(f"gpufleet validate: {report.documents} document(s) in {report.files} file(s): {verdict} "
              f"({report.seconds:.1f} s)", file=sys.stderr)
    return 1 if report.findings else 0
