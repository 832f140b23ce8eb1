#!/usr/bin/env python
"""The command line: ``python run.py {backtest,features,train,live,dashboard,news} --help``.

Each command lives in ``cli/<command>.py`` with ``add_arguments(parser)`` and ``run(args) -> int``.
A ``UserError`` (bad data, bad config, bad option) is printed as one line, exit status 2, no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet TensorFlow's start-up chatter

COMMANDS = {
    "backtest": "run a backtest on historical bars and write metrics, records, plots and a report",
    "features": "write the feature matrix of some data (the same code path the strategy uses)",
    "train": "train the ML ensemble walk-forward on history and save it in the model registry for live use",
    "live": "trade the strategy on Alpaca (paper by default), or --replay recorded bars through the live path",
    "dashboard": "watch a run folder or a live session in the browser, and steer a live one (pause, flatten ...)",
    "news": "download Alpaca's news headlines of some symbols into the CSV data.news reads (resumable)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"cli.{name}")
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    from common.errors import UserError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._module.run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
