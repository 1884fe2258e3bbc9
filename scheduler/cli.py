"""The ``gpufleet`` command: one entry point whose subcommands start every part of gpufleet.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their subcommand runs, so ``gpufleet simulate`` never loads grpc.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("scheduler.simulate_cli", "replay an openb trace with the FGD paper's protocol"),
    "cluster": ("scheduler.localcluster.cli", "run a local control plane with fake GPU nodes (up|down|status)"),
    "demo": ("scheduler.demo", "replay an openb slice on the local cluster, with and without gpufleet"),
    "agent": ("autoscaler.agent.cli", "run the GPU node agent (NVML or --simulate; gRPC stream + /metrics)"),
    "extender": ("scheduler.extender.cli", "run the kube-scheduler extender (filter/prioritize/bind/preempt over HTTP)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpufleet", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub_parser = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
