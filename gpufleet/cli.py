"""The ``gpufleet`` command: one entry point whose subcommands start every part of gpufleet.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Only the module of the subcommand being run is imported (``gpufleet --help`` imports none), so
``gpufleet agent`` never loads numpy or numba and ``gpufleet simulate`` never loads grpc.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("gpufleet.scheduler.simulate_cli", "replay an openb trace with the FGD paper's protocol"),
    "cluster": ("gpufleet.scheduler.localcluster.cli",
                "run a local control plane with fake GPU nodes (up|down|status)"),
    "demo": ("gpufleet.scheduler.demo", "replay an openb slice on the local cluster, with and without gpufleet"),
    "agent": ("gpufleet.autoscaler.agent.cli", "run the GPU node agent (NVML or --simulate; gRPC stream + /metrics)"),
    "extender": ("gpufleet.scheduler.extender.cli",
                 "run the kube-scheduler extender (filter/prioritize/bind/preempt over HTTP)"),
    "controller": ("gpufleet.autoscaler.controller.cli", "run the reclaim controller (idle GPUs: notice, then scale/suspend/evict)"),
    "reclaim": ("gpufleet.autoscaler.reclaim.cli", "backtest the idle-GPU reclaim policy on a utilisation trace"),
    "validate": ("gpufleet.validate.cli", "check config-repo YAML against the real API server and gpufleet's rules"),
    "device-plugin": ("gpufleet.autoscaler.deviceplugin.cli", "kubelet device plugin: the GPUs the extender chose"),
    "certs": ("gpufleet.scheduler.extender.certscli", "write CA, extender and kube-scheduler certificates (mTLS)"),
    "recommend": ("gpufleet.autoscaler.cost.cli",
                  "cheapest GPU instance mix for a recorded workload, beside Karpenter's rule"),
    "report": ("gpufleet.autoscaler.cost.report", "GPU waste by kind and team from recorded series, top fixes, PNGs"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported to add its arguments (none when None)."""
    parser = argparse.ArgumentParser(prog="gpufleet", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        module = importlib.import_module(module_name)
        sub_parser = sub.add_parser(name, help=help_text, description=module.__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def _command(argv: list[str]) -> str | None:
    """The first argument that names a subcommand (options before it take no values)."""
    return next((arg for arg in argv if arg in SUBCOMMANDS), None)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse a command line, importing only the module of the subcommand it names."""
    return build_parser(_command(argv)).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
