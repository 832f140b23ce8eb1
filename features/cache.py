"""The feature cache: batch panels kept on disk and reused by ``backtest``, ``train`` and ``features``.

:func:`batch_panel` is the one way a run computes its batch panel: with ``features.cache`` on, it
first looks for an entry computed before from the same inputs. An entry is found by a key, the
sha256 of everything the values depend on:

- the bars, as the engine reads them (:class:`~features.engine.BarArrays`: symbols, times, which
  symbol has which bar, and every open, high, low, close and volume);
- the registry: each feature's name, group, warm-up, clock and formula (its structure key, so a
  changed parameter, or ``features.normalise``'s rank or z-score around a feature, is another
  formula), and the context (sectors, news, macro);
- the engine's other inputs: the sector groups, the news totals and the macro series it reads;
- the ``[features]`` settings (tolerances, close time, news band; not the cache's own settings);
- the source of the ``features`` package, the numeric libraries' versions and the machine, and
  :data:`FORMAT_VERSION`: changed code is never served values computed by older code.

An entry is two files in ``features.cache_dir``: ``KEY.npy`` (the (F, T, N) values, a plain ``.npy``
that ``numpy.load(..., mmap_mode="r")`` can map) and ``KEY.json`` (times, symbols, names, which
symbol has which bar, the sha256 of the values' bytes, and a sha256 of itself). Each file is written
under a temporary name in the same folder and renamed into place (atomic), the metadata last, so
another process sees a whole entry or none. Loading checks everything against the request and the
checksums; an entry that fails any check is reported (a warning naming the file and the reason),
deleted and computed again, never used.

A panel read from the cache equals a fresh computation bit for bit (float64, the engine's dtype).
With ``features.cache_dtype = "float32"`` the entry stores, and the helper returns, float32 values,
hit or miss alike: each value is the float64 one rounded to float32 (relative error at most 2^-24,
about 6e-8; see ``docs/scaling.md``). Entries are never evicted: delete the folder to reclaim space.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import platform
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from features.engine import BAR_FIELDS, BarArrays, FeatureEngine, FeaturePanel

log = logging.getLogger("features")

FORMAT_VERSION = 1
"""Bump when the entry layout or the key's recipe changes: older entries are then never found."""

_CACHE_SETTINGS = {"cache", "cache_dir", "cache_dtype"}  # how values are kept, not what they are
_PACKAGE = Path(__file__).resolve().parent


class CorruptEntry(Exception):
    """A cache entry that fails a check; the message says which."""


@dataclass(frozen=True)
class FeatureCache:
    """Batch panels on disk under ``directory``, stored as ``dtype`` ("float64" or "float32")."""

    directory: Path
    dtype: str = "float64"

    @classmethod
    def from_config(cls, config) -> "FeatureCache | None":
        """The cache the ``[features]`` section (``FeaturesConfig``) describes; None when it is off."""
        if not config.cache:
            return None
        return cls(Path(config.cache_dir), config.cache_dtype)

    # ---- the one entry point ------------------------------------------------------------------
    def panel(self, engine: FeatureEngine, arrays: BarArrays, progress: bool = False) -> FeaturePanel:
        """The engine's batch panel of ``arrays``: read from the cache, else computed and stored."""
        start = time.perf_counter()
        key = self.key(engine, arrays)
        found = self.load(key, engine, arrays)
        if found is not None:
            log.info("feature cache hit %s: %d features x %d bars x %d symbols read in %.2f s (%s)", key[:12],
                     *found.data.shape, time.perf_counter() - start, self.directory)
            return found
        computing = time.perf_counter()
        panel = engine.batch_arrays(*arrays, progress)
        if panel.data.dtype != np.dtype(self.dtype):
            panel = FeaturePanel(panel.times, panel.symbols, panel.names, panel.data.astype(self.dtype), panel.present)
        storing = time.perf_counter()
        stored = self.store(key, panel, seconds=storing - computing)
        log.info("feature cache miss %s: computed in %.2f s%s", key[:12], storing - computing,
                 f", stored in {self.directory} in {time.perf_counter() - storing:.2f} s" if stored else "")
        return panel

    # ---- the key ------------------------------------------------------------------------------
    def key(self, engine: FeatureEngine, arrays: BarArrays) -> str:
        """sha256 (hex) of everything the panel's values depend on (see the module docstring)."""
        h = hashlib.sha256()

        def part(label: str, payload) -> None:
            data = payload.encode() if isinstance(payload, str) else payload
            h.update(f"{label}:{data.nbytes if isinstance(data, np.ndarray) else len(data)}:".encode())
            h.update(data)

        def array(label: str, values: np.ndarray) -> None:
            values = np.ascontiguousarray(values)
            part(f"{label}.shape", f"{values.dtype.str}{values.shape}")
            part(label, values.reshape(-1).view(np.uint8))

        part("format", f"{FORMAT_VERSION}/{np.dtype(self.dtype).str}")
        part("code", _code_digest())
        part("platform", json.dumps(_versions(), sort_keys=True))
        # the bars
        times, present, fields = arrays
        times = pd.DatetimeIndex(times)
        part("symbols", json.dumps(list(engine.symbols)))
        part("tz", str(times.tz))
        array("times", times.as_unit("ns").asi8)
        array("present", np.asarray(present, dtype=bool))
        for name in BAR_FIELDS:
            values = np.asarray(fields[name], dtype=np.float64)
            array(f"bars.{name}", np.where(np.isnan(values), np.nan, values))  # one NaN bit pattern
        # the definitions
        registry = engine.registry
        part("context", repr(registry.context))
        lines = [f"{f.name}|{f.group}|{f.warmup}|{f.calendar_clock}|{k}"
                 for f, k in zip(registry, _structure_keys(registry))]
        part("registry", "\n".join(lines))
        part("settings", json.dumps(engine.config.model_dump(mode="json", exclude=_CACHE_SETTINGS), sort_keys=True))
        # the other inputs
        for name, grouping in sorted(engine.groupings.items()):
            array(f"grouping.{name}", grouping.codes)
        if engine.news is not None:
            for j, (stamps, totals) in enumerate(zip(engine.news.times, engine.news.totals)):
                array(f"news.{j}.times", stamps)
                array(f"news.{j}.totals", totals)
        for name, series in sorted(engine.macro.items()):
            array(f"macro.{name}.known_at", series.known_at)
            array(f"macro.{name}.values", series.values)
        return h.hexdigest()

    # ---- entries ------------------------------------------------------------------------------
    def paths(self, key: str) -> tuple[Path, Path]:
        """(values .npy, metadata .json) of an entry."""
        return self.directory / f"{key}.npy", self.directory / f"{key}.json"

    def load(self, key: str, engine: FeatureEngine, arrays: BarArrays) -> FeaturePanel | None:
        """The entry's panel, or None when there is none; an entry that fails a check is reported,
        deleted, and None returned."""
        data_path, meta_path = self.paths(key)
        try:
            text = meta_path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            return self._discard(key, meta_path, f"unreadable: {exc}")
        try:
            meta = _read_meta(text)
            shape = (len(engine.names), len(arrays.times), len(engine.symbols))
            expected = {"format": FORMAT_VERSION, "key": key, "dtype": np.dtype(self.dtype).str,
                        "shape": list(shape), "symbols": list(engine.symbols), "names": list(engine.names)}
            for field, value in expected.items():
                if meta.get(field) != value:
                    raise CorruptEntry(f"its {field} is not the request's")
            if meta.get("times") != pd.DatetimeIndex(arrays.times).as_unit("ns").asi8.tolist():
                raise CorruptEntry("its times are not the request's")
            if not np.array_equal(_unpack_present(meta, shape[1:]), np.asarray(arrays.present, dtype=bool)):
                raise CorruptEntry("its bars present are not the request's")
        except (CorruptEntry, KeyError, TypeError, ValueError) as exc:
            return self._discard(key, meta_path, str(exc) if isinstance(exc, CorruptEntry) else repr(exc))
        try:
            data = _read_npy(data_path, shape, np.dtype(self.dtype))
            if _sha256(data) != meta["data_sha256"]:
                raise CorruptEntry("checksum mismatch")
        except FileNotFoundError:
            return self._discard(key, data_path, "missing")
        except (CorruptEntry, OSError, ValueError, EOFError, KeyError) as exc:
            return self._discard(key, data_path, str(exc) if isinstance(exc, CorruptEntry) else repr(exc))
        return FeaturePanel(arrays.times, list(engine.symbols), engine.names, data, arrays.present)

    def store(self, key: str, panel: FeaturePanel, seconds: float = float("nan")) -> bool:
        """Write an entry (atomically); a failure (a full disk, a read-only folder) is a warning
        and the run goes on without it. True when stored."""
        data_path, meta_path = self.paths(key)
        data = np.ascontiguousarray(panel.data, dtype=self.dtype)
        meta = {"format": FORMAT_VERSION, "key": key, "dtype": data.dtype.str, "shape": list(data.shape),
                "data_sha256": _sha256(data), "symbols": list(panel.symbols), "names": list(panel.names),
                "times": pd.DatetimeIndex(panel.times).as_unit("ns").asi8.tolist(),
                "present": base64.b64encode(np.packbits(np.asarray(panel.present, dtype=bool))).decode(),
                "computed_seconds": round(seconds, 3), "versions": _versions()}
        meta["meta_sha256"] = _meta_digest(meta)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _atomic_write(data_path, lambda fh: np.save(fh, data, allow_pickle=False))
            _atomic_write(meta_path, lambda fh: fh.write(json.dumps(meta).encode()))
        except OSError as exc:
            log.warning("feature cache: could not store %s (%s); going on without it", data_path, exc)
            return False
        return True

    def _discard(self, key: str, path: Path, why: str) -> None:
        log.warning("feature cache: %s is corrupt or unreadable (%s): deleted, the features are computed again",
                    path, why)
        for stale in self.paths(key):
            try:
                stale.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("feature cache: could not delete %s (%s)", stale, exc)
        return None


def batch_panel(engine: FeatureEngine, bars: Mapping[str, pd.DataFrame] | BarArrays,
                progress: bool = False) -> FeaturePanel:
    """The engine's batch panel of ``bars`` ({symbol: OHLCV frame}, or the :class:`BarArrays` of an
    adapter), through the cache the engine's ``[features]`` settings describe: the one call that
    ``backtest`` (the strategy's feature hub), ``train`` and ``features`` make."""
    arrays = bars if isinstance(bars, BarArrays) else engine.bar_arrays(bars)
    cache = FeatureCache.from_config(engine.config)
    if cache is None:
        return engine.batch_arrays(*arrays, progress)
    return cache.panel(engine, arrays, progress)


# ---------------------------------------------------------------------------------------------
# Helpers

def _structure_keys(registry) -> list[str]:
    from features.engine import structure_keys

    return structure_keys([f.node for f in registry])


def _code_digest() -> str:
    """sha256 of the ``features`` package's source files (names and contents)."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(_PACKAGE)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    """The libraries that compute the values, and the machine (SIMD paths may round differently)."""
    import talib

    return {"python": sys.version.split()[0], "numpy": np.__version__, "pandas": pd.__version__,
            "talib": f"{talib.__version__} / {getattr(talib, '__ta_version__', b'?').decode(errors='replace')}",
            "machine": platform.machine()}


def _sha256(data: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(data).reshape(-1).view(np.uint8)).hexdigest()


def _meta_digest(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_meta(text: bytes) -> dict:
    try:
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptEntry(f"not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise CorruptEntry("not a JSON object")
    if meta.get("meta_sha256") != _meta_digest(meta):
        raise CorruptEntry("checksum mismatch")
    return meta


def _unpack_present(meta: dict, shape: tuple[int, int]) -> np.ndarray:
    try:
        bits = np.frombuffer(base64.b64decode(meta["present"], validate=True), dtype=np.uint8)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptEntry(f"bad bars present: {exc}") from None
    size = shape[0] * shape[1]
    if len(bits) != (size + 7) // 8:
        raise CorruptEntry("bad bars present: wrong length")
    return np.unpackbits(bits, count=size).astype(bool).reshape(shape)


def _read_npy(path: Path, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """The array of a ``.npy`` file into fresh memory, after checking its header and size."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version not in readers:
            raise CorruptEntry(f"unknown .npy version {version}")
        found_shape, fortran, found_dtype = readers[version](fh)
        if tuple(found_shape) != shape or found_dtype != dtype or fortran:
            raise CorruptEntry(f"array {found_dtype}{tuple(found_shape)} where {dtype}{shape} was expected")
        data = np.empty(shape, dtype=dtype)
        size = os.fstat(fh.fileno()).st_size - fh.tell()
        if size != data.nbytes:
            raise CorruptEntry(f"{size} bytes of values where {data.nbytes} were expected")
        view, read = memoryview(data.reshape(-1).view(np.uint8)), 0
        while read < data.nbytes:
            got = fh.readinto(view[read:])
            if not got:
                raise CorruptEntry(f"{read} bytes of values where {data.nbytes} were expected")
            read += got
    return data


def _atomic_write(path: Path, write) -> None:
    """Write a file under a temporary name in its folder, then rename it into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as fh:
            write(fh)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
