"""One typed config: ``load_config(path, overrides)`` merges a user's TOML file and command-line
overrides over ``config/default.toml`` and validates the result into frozen objects."""
from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from common.errors import ConfigError
from config.schema import Config

DEFAULT_PATH = Path(__file__).with_name("default.toml")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """{"backtest.cash": 5} -> {"backtest": {"cash": 5}}"""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _known_keys(model, loc: tuple) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not hasattr(field.annotation, "model_fields"):
            return []
        model = field.annotation
    return list(model.model_fields)


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            hint = difflib.get_close_matches(str(loc[-1]), _known_keys(Config, loc), n=1)
            msg = "unknown key" + (f" (did you mean {hint[0]}?)" if hint else "")
        elif err["type"] == "missing":
            msg = "missing key"
        else:
            msg = err["msg"]
            if "input" in err and not isinstance(err["input"], (dict, list)):
                msg += f" (got {err['input']!r})"
        lines.append(f"{dotted}: {msg}")
    return f"config error in {source}: " + "; ".join(lines)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the user's file, then dotted command-line overrides; validated."""
    raw = _read_toml(DEFAULT_PATH)
    source = str(DEFAULT_PATH)
    if path is not None:
        raw = _merge(raw, _read_toml(Path(path)))
        source = str(path)
    if overrides:
        raw = _merge(raw, _dotted({k: v for k, v in overrides.items() if v is not None}))
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


# settings that decide where the work runs or is kept, never what it computes: left out of a run's recorded
# config and its fingerprint, so a run on Ray and one in a single process record the same
# (alerts and dashboard also because they hold tokens, never written to a run's metrics.json)
RESULT_NEUTRAL = {"executor": True, "reconciliation": True, "alerts": True, "dashboard": True, "features": {"cache", "cache_dir"}}


def results_config(cfg: Config) -> dict:
    """The config as a run records it: every setting that can change a result."""
    return cfg.model_dump(mode="json", exclude=RESULT_NEUTRAL)


def config_hash(cfg: Config) -> str:
    """A short, stable fingerprint of the config's settings that change results (recorded with runs
    and models)."""
    text = json.dumps(results_config(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = ["Config", "load_config", "config_hash", "results_config", "DEFAULT_PATH"]
