"""The feature cache (``features.cache``) on real sample bars: a hit equals a fresh computation bit for
bit; other bars, other definitions or other inputs are other entries; a corrupt entry is reported,
deleted and computed again, never used; with the cache off nothing is written; float32 storage keeps
every value within 2^-24 (relative) of float64."""
from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from config import load_config
from features import FeatureEngine, build_registry
from features.cache import FeatureCache, batch_panel
from features.from_config import engine_from_config
from features.registry import Registry, default_config
from feeds.loader import load_sector_map, load_universe
from tests.features.helpers import ROOT, feature_scale

SYMBOLS = ("AAPL", "KO", "PYPL")  # PYPL starts in July 2015: a ragged calendar
START, END = "2015-01-01", "2016-06-30"
FILES = [str(ROOT / "data" / "sample" / f"{s}_data.csv") for s in SYMBOLS]


@pytest.fixture(scope="module")
def bars() -> dict[str, pd.DataFrame]:
    return {s: frame.loc[START:END] for s, frame in load_universe(FILES).items()}


@pytest.fixture(scope="module")
def sectors() -> dict[str, str]:
    return load_sector_map(ROOT / "data" / "sectors.csv")


@pytest.fixture(scope="module")
def engine(bars, sectors) -> FeatureEngine:
    return FeatureEngine(build_registry(), list(bars), sectors=sectors)


@pytest.fixture(scope="module")
def fresh(engine, bars):
    return engine.batch(bars)


@pytest.fixture
def cache(tmp_path) -> FeatureCache:
    return FeatureCache(tmp_path / "cache")


def entries(cache: FeatureCache) -> list[str]:
    return sorted(p.name for p in cache.directory.iterdir()) if cache.directory.exists() else []


def assert_same_panel(found, expected):
    assert found.data.dtype == expected.data.dtype and found.data.shape == expected.data.shape
    assert np.array_equal(found.data, expected.data, equal_nan=True)
    assert np.array_equal(found.data.view(np.uint8), expected.data.view(np.uint8))  # bit for bit, NaNs too
    assert found.times.equals(expected.times) and found.times.name == expected.times.name
    assert found.symbols == expected.symbols and found.names == expected.names
    assert np.array_equal(found.present, expected.present)


def messages(caplog, level) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "features" and r.levelno == level]


def test_a_hit_equals_a_fresh_computation_bit_for_bit(cache, engine, bars, fresh, caplog):
    arrays = engine.bar_arrays(bars)
    with caplog.at_level(logging.INFO, logger="features"):
        missed = cache.panel(engine, arrays)
        hit = cache.panel(engine, arrays)
    key = cache.key(engine, arrays)
    assert entries(cache) == [f"{key}.json", f"{key}.npy"]        # no temporary file left behind
    info = messages(caplog, logging.INFO)
    assert info[0].startswith(f"feature cache miss {key[:12]}") and info[1].startswith(f"feature cache hit {key[:12]}")
    assert_same_panel(missed, fresh)
    assert_same_panel(hit, fresh)
    assert hit.data.flags.writeable and hit.data.flags.c_contiguous
    # the values file is a plain .npy: it maps as it is
    mapped = np.load(cache.paths(key)[0], mmap_mode="r")
    assert np.array_equal(mapped, fresh.data, equal_nan=True)


def test_the_key_is_the_same_for_the_same_inputs_built_again(cache, engine, bars, sectors):
    again = FeatureEngine(build_registry(), list(bars), sectors=sectors)
    reloaded = {s: frame.loc[START:END] for s, frame in load_universe(FILES).items()}
    assert cache.key(again, again.bar_arrays(reloaded)) == cache.key(engine, engine.bar_arrays(bars))


def test_changing_one_data_value_rebuilds(cache, engine, bars, fresh, caplog):
    cache.panel(engine, engine.bar_arrays(bars))
    changed = dict(bars)
    frame = changed["KO"].copy()
    frame.iloc[200, frame.columns.get_loc("close")] *= 1.01
    changed["KO"] = frame
    with caplog.at_level(logging.INFO, logger="features"):
        panel = cache.panel(engine, engine.bar_arrays(changed))
    assert "feature cache miss" in messages(caplog, logging.INFO)[0]
    assert len(entries(cache)) == 4                                # a second entry beside the first
    assert_same_panel(panel, engine.batch(changed))
    assert not np.array_equal(panel.data, fresh.data, equal_nan=True)


def test_changing_a_feature_definition_rebuilds(cache, engine, bars, sectors, fresh):
    """rsi_14 computed by rsi_7's formula: same names, groups and warm-ups, another formula."""
    registry = engine.registry
    other = registry["rsi_7"].node
    features = [replace(f, node=other) if f.name == "rsi_14" else f for f in registry]
    changed = FeatureEngine(Registry(features, registry.context, registry.seed_tolerance), list(bars), sectors=sectors)
    cache.panel(engine, engine.bar_arrays(bars))
    arrays = changed.bar_arrays(bars)
    assert cache.key(changed, arrays) != cache.key(engine, arrays)
    panel = cache.panel(changed, arrays)
    assert len(entries(cache)) == 4
    assert_same_panel(panel, changed.batch(bars))
    k = fresh.names.index("rsi_14")
    assert not np.array_equal(panel.data[k], fresh.data[k], equal_nan=True)


@pytest.mark.parametrize("change", ["seed_tolerance", "daily_close_time", "sectors", "macro"])
def test_every_other_input_is_in_the_key(change, cache, bars, sectors):
    days = pd.bdate_range(START, END)
    macro = {"vix": pd.Series(np.linspace(12.0, 20.0, len(days)), index=days)}
    base = dict(sectors=sectors, macro=macro, config=default_config())
    options = dict(base)
    if change == "sectors":
        options["sectors"] = {**sectors, "KO": sectors["AAPL"]}  # other groups (a renamed one is the same)
    elif change == "macro":
        options["macro"] = {"vix": macro["vix"].where(macro["vix"].index != days[100], 30.0)}
    else:
        value = {"seed_tolerance": 1e-6, "daily_close_time": pd.Timestamp("17:00").time()}[change]
        options["config"] = base["config"].model_copy(update={change: value})
    engines = [FeatureEngine(build_registry(has_macro=["vix"], config=o["config"]), list(bars), **o)
               for o in (base, options)]
    keys = [cache.key(e, e.bar_arrays(bars)) for e in engines]
    assert keys[0] != keys[1]


def test_the_cache_settings_are_not_in_the_key(cache, engine, bars, sectors, tmp_path):
    settings = default_config().model_copy(update={"cache": False, "cache_dir": str(tmp_path / "elsewhere")})
    other = FeatureEngine(engine.registry, list(bars), sectors=sectors, config=settings)
    arrays = engine.bar_arrays(bars)
    assert cache.key(other, arrays) == cache.key(engine, arrays)


def corrupt_values(path):
    flip = bytearray(path.read_bytes())
    flip[len(flip) // 2] ^= 0xFF
    return {"flipped byte": lambda: path.write_bytes(bytes(flip)),
            "truncated": lambda: path.write_bytes(path.read_bytes()[: len(flip) // 3]),
            "longer": lambda: path.write_bytes(path.read_bytes() + b"\0" * 8),
            "missing": lambda: path.unlink(),
            "not npy": lambda: path.write_bytes(b"garbage")}


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "longer", "missing", "not npy"])
def test_a_corrupt_values_file_is_rebuilt_with_a_warning(damage, cache, engine, bars, fresh, caplog):
    arrays = engine.bar_arrays(bars)
    cache.panel(engine, arrays)
    values, _ = cache.paths(cache.key(engine, arrays))
    corrupt_values(values)[damage]()
    with caplog.at_level(logging.INFO, logger="features"):
        panel = cache.panel(engine, arrays)
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and str(values) in warnings[0] and "computed again" in warnings[0]
    assert "feature cache miss" in messages(caplog, logging.INFO)[-1]
    assert_same_panel(panel, fresh)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="features"):
        assert_same_panel(cache.panel(engine, arrays), fresh)     # rebuilt: a clean hit
    assert not messages(caplog, logging.WARNING) and "hit" in messages(caplog, logging.INFO)[0]


def resealed(meta: dict, **changes) -> bytes:
    """Metadata with some fields changed and its own checksum made right again."""
    from features.cache import _meta_digest

    meta = {**meta, **changes}
    meta["meta_sha256"] = _meta_digest(meta)
    return json.dumps(meta).encode()


@pytest.mark.parametrize("damage, reason", [
    ("not json", "not JSON"),
    ("truncated", "not JSON"),
    ("edited", "checksum mismatch"),
    ("other shape", "its shape is not the request's"),
    ("other times", "its times are not the request's"),
    ("other values checksum", "checksum mismatch"),
])
def test_a_corrupt_metadata_file_is_rebuilt_with_a_warning(damage, reason, cache, engine, bars, fresh, caplog):
    arrays = engine.bar_arrays(bars)
    cache.panel(engine, arrays)
    values, metadata = cache.paths(cache.key(engine, arrays))
    text = metadata.read_bytes()
    meta = json.loads(text)
    metadata.write_bytes({
        "not json": b"\x00\x01 not json",
        "truncated": text[: len(text) // 2],
        "edited": text.replace(b'"names": ["', b'"names": ["x'),
        "other shape": resealed(meta, shape=[meta["shape"][0], meta["shape"][1] - 1, meta["shape"][2]]),
        "other times": resealed(meta, times=[t + 1 for t in meta["times"]]),
        "other values checksum": resealed(meta, data_sha256="0" * 64),
    }[damage])
    with caplog.at_level(logging.WARNING, logger="features"):
        panel = cache.panel(engine, arrays)
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and reason in warnings[0]
    assert str(values if damage == "other values checksum" else metadata) in warnings[0]
    assert_same_panel(panel, fresh)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="features"):
        assert_same_panel(cache.panel(engine, arrays), fresh)     # written again, whole: a clean hit
    assert not messages(caplog, logging.WARNING) and "hit" in messages(caplog, logging.INFO)[0]


def test_a_cache_that_cannot_be_written_warns_and_the_run_goes_on(tmp_path, engine, bars, fresh, caplog):
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="features"):
        panel = FeatureCache(blocked / "cache").panel(engine, engine.bar_arrays(bars))
    assert "could not store" in messages(caplog, logging.WARNING)[0]
    assert_same_panel(panel, fresh)


def test_batch_panel_follows_the_config(tmp_path, bars):
    """Cache on: an entry in ``features.cache_dir``, then a hit. Off: the same panel, nothing written."""
    on = load_config(overrides={"data.paths": FILES, "features.cache_dir": str(tmp_path / "on")})
    off = load_config(overrides={"data.paths": FILES, "features.cache": False,
                                 "features.cache_dir": str(tmp_path / "off")})
    engine = engine_from_config(on, list(bars))
    expected = engine.batch(bars)
    assert_same_panel(batch_panel(engine, bars), expected)
    assert len(list((tmp_path / "on").glob("*.npy"))) == 1
    assert_same_panel(batch_panel(engine, bars), expected)
    assert_same_panel(batch_panel(engine_from_config(off, list(bars)), bars), expected)
    assert not (tmp_path / "off").exists()


def test_float32_storage_keeps_each_value_within_2_to_the_minus_24(cache, engine, bars, fresh):
    """Stored as float32, every value is its float64 value rounded to nearest: |f32 - f64| <= 2^-24
    |f64| (NaN where NaN, no overflow: the largest |value| is ~1,500 on the sample, ~2,100 on the
    S&P 500 universe).

    Measured on eight symbols of the sample over their whole history (1,259 bars, 238 features): the
    largest relative error of an element is 5.96e-8 (0.9995 x 2^-24); relative to each feature's scale
    (its mean |value|) the median is 1.4e-7 and the largest 8.8e-7 (sector_rel_rvol_20). Sparse
    features reach more against their mean: with news, sent_1 (mean |value| 0.0016, largest 0.875)
    1.9e-5. See docs/scaling.md, "Feature cache and float32"."""
    float32 = FeatureCache(cache.directory, "float32")
    arrays = engine.bar_arrays(bars)
    missed, hit = float32.panel(engine, arrays), float32.panel(engine, arrays)
    assert missed.data.dtype == np.float32
    assert_same_panel(hit, missed)                                 # hit and miss alike
    assert cache.key(engine, arrays) != float32.key(engine, arrays)
    x, y = fresh.data, hit.data.astype(np.float64)
    assert np.array_equal(np.isnan(x), np.isnan(y)) and not np.isinf(y).any()
    finite = np.isfinite(x)
    assert (np.abs(y - x)[finite] <= 2.0 ** -24 * np.abs(x[finite])).all()
    worst = max(np.nanmax(np.abs(y[f] - x[f])) / feature_scale(x[f]) for f in range(len(x)) if finite[f].any())
    assert worst < 1e-6
