"""Options shared by several commands, and turning them into a validated config."""
from __future__ import annotations

import argparse
from typing import Any

from common.errors import UserError
from config import Config, load_config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML file merged over config/default.toml")


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=("serial", "ray"),
                        help="where the walk-forward trains: in this process (serial) or as Ray tasks "
                             "(default: the config's executor.kind)")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="join the Ray cluster at ADDR (with --executor ray; default: start a local Ray)")


def executor_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """--executor and --ray-address as config overrides (an address alone means Ray)."""
    if args.ray_address and args.executor == "serial":
        raise UserError("--ray-address needs --executor ray")
    return {"executor.kind": "ray" if args.ray_address else args.executor, "executor.address": args.ray_address}


def add_strategy_option(parser: argparse.ArgumentParser) -> None:
    from strategies import STRATEGIES

    names = sorted(STRATEGIES)
    # not argparse choices: an unknown name is the user's error, one line (strategies.get_strategy)
    parser.add_argument("--strategy", metavar="NAME",
                        help=f"the strategy: {', '.join(names)} (default: the config's backtest.strategy)")


def add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="PATH", action="append",
                        help="CSV file or folder of CSV files, one symbol per file (repeatable; "
                             "default: the config's data.paths, the sample universe)")


def load_data(cfg: Config, *, min_bars: int = 1, end=None, quality=None) -> dict:
    """The universe of ``data.paths`` under the config's row policy (``data.invalid_rows``,
    ``data.drop_missing_prices``); ``quality`` (a ``feeds.loader.DataQuality``) collects what was dropped
    and skipped."""
    from feeds.loader import load_universe

    return load_universe(cfg.data.paths, drop_missing_prices=cfg.data.drop_missing_prices,
                         invalid_rows=cfg.data.invalid_rows, min_bars=min_bars, end=end, quality=quality)


def config_from_args(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Config:
    """The config file, then command-line options (only those the user gave); every command has
    ``--data`` and ``--config`` (``add_data_option``, ``add_config_option``)."""
    merged = dict(overrides or {})
    if args.data:
        merged["data.paths"] = list(args.data)
    return load_config(args.config, merged)
