"""``python -m gpufleet.autoscaler.agent``: the same as ``gpufleet agent``, without loading the other subcommands."""

from __future__ import annotations

import argparse
import logging
import sys

from gpufleet.autoscaler.agent import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpufleet agent", description=cli.__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return cli.run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
