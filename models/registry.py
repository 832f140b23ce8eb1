"""Model registry: a trained :class:`~models.predictor.EnsemblePredictor` in a folder with a manifest.

Layout of ``models/registry/NAME``::

    manifest.json   feature names, feature registry hash, config hash, training range, seed,
                    library versions, validation metrics, model ids (a hash of each model's files)
    model/          the predictor (``EnsemblePredictor.save``)

:func:`load` refuses (``common.errors.UserError``, naming the difference) an artefact whose feature
list differs from the one the code computes: its columns would be read as different features.
The non-plugin parts are pickled with joblib: load only artefacts you trust, with the library
versions the manifest lists.
"""
from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from common.errors import UserError
from common.jsonable import to_jsonable
from models.predictor import EnsemblePredictor

MANIFEST = "manifest.json"
REGISTRY_ROOT = Path("models") / "registry"   # `run.py train --out models/registry/NAME`; live `--model NAME`
_LIBRARIES = {"numpy": ("numpy",), "pandas": ("pandas",), "scikit-learn": ("scikit-learn",),
              "xgboost": ("xgboost-cpu", "xgboost"), "lightgbm": ("lightgbm",),
              "tensorflow": ("tensorflow-cpu", "tensorflow"), "keras": ("keras",), "arch": ("arch",)}


def library_versions() -> dict[str, str | None]:
    """Installed versions of the model libraries (read from package metadata: nothing is imported)."""
    out = {}
    for name, distributions in _LIBRARIES.items():
        out[name] = None
        for dist in distributions:
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def _files_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def save(predictor: EnsemblePredictor, directory, *, feature_names, feature_registry_hash: str, config_hash: str,
         training_range: tuple[str, str], validation_metrics: dict | None = None,
         symbols: list[str] | None = None) -> dict:
    """Write the predictor and its manifest into ``directory``; returns the manifest."""
    directory = Path(directory)
    model_dir = directory / "model"
    predictor.save(model_dir)
    ids = {name: _files_hash(model_dir / "base" / name) for name in predictor.base_names}
    ids.update(timing=_files_hash(model_dir / "timing"), stoploss=_files_hash(model_dir / "stoploss"),
               state=hashlib.sha256((model_dir / "state.joblib").read_bytes()).hexdigest()[:16])
    manifest = {
        "feature_names": list(feature_names),
        "feature_registry_hash": feature_registry_hash,
        "config_hash": config_hash,
        "training_range": list(training_range),
        "symbols": None if symbols is None else list(symbols),
        "fitted_at_bar": predictor.fitted_at,
        "seed": predictor.seed,
        "horizons": list(predictor.horizons),
        "decision_horizon": predictor.cfg.decision_horizon,
        "base_models": predictor.base_names,
        "model_ids": ids,
        "library_versions": library_versions(),
        "validation_metrics": to_jsonable(validation_metrics or {}),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def read_manifest(directory) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise UserError(f"{directory}: not a model folder (no {MANIFEST})")
    return json.loads(path.read_text())


def _difference(saved: list[str], expected: list[str]) -> str:
    missing = [n for n in saved if n not in set(expected)]
    new = [n for n in expected if n not in set(saved)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} feature(s) the model needs are not computed by the code: {missing[:10]}")
    if new:
        parts.append(f"{len(new)} feature(s) the code computes are unknown to the model: {new[:10]}")
    if not parts:
        at = next(i for i, (a, b) in enumerate(zip(saved, expected)) if a != b)
        parts.append(f"same features in another order (first difference at column {at}: "
                     f"model {saved[at]!r}, code {expected[at]!r})")
    return "; ".join(parts)


def load(directory, expected_feature_names, expected_registry_hash: str | None = None
         ) -> tuple[EnsemblePredictor, dict]:
    """(predictor, manifest). Refuses a model trained on another feature list (or, when
    ``expected_registry_hash`` is given, on other feature definitions) with a ``UserError``."""
    manifest = read_manifest(directory)
    saved, expected = manifest["feature_names"], list(expected_feature_names)
    if saved != expected:
        raise UserError(f"{directory}: the model was trained on a different feature list "
                        f"({len(saved)} features, the code has {len(expected)}): {_difference(saved, expected)}; "
                        "retrain it with `run.py train`")
    if expected_registry_hash is not None and manifest["feature_registry_hash"] != expected_registry_hash:
        raise UserError(f"{directory}: the model's feature definitions (registry hash "
                        f"{manifest['feature_registry_hash']}) differ from the code's ({expected_registry_hash}); "
                        "retrain it with `run.py train`")
    return EnsemblePredictor.load(Path(directory) / "model"), manifest
