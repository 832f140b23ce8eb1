"""Options shared by several commands, and turning them into a validated config."""
from __future__ import annotations

import argparse
from typing import Any

from config import Config, load_config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML file merged over config/default.toml")


def add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="PATH", action="append",
                        help="CSV file or folder of CSV files, one symbol per file (repeatable; "
                             "default: the config's data.paths, the sample universe)")


def config_from_args(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Config:
    """The config file, then command-line options (only those the user gave)."""
    merged = dict(overrides or {})
    if getattr(args, "data", None):
        merged["data.paths"] = list(args.data)
    return load_config(getattr(args, "config", None), merged)
