"""The one interface every model implements: ``fit``, ``predict``, ``save``, ``load``.

A plugin is a multi-output regressor: ``fit(X, y)`` with y of shape (n, K) (K = the horizons for the
price models, 2 for timing, 1 for the stop model) and ``predict(X) -> (n, K)``. ``X`` is (n, F) for
``input_kind = "flat"`` plugins and (n, seq_len, k) for ``"sequence"`` ones, float32, NaN allowed
(tree models take NaN natively; the networks impute and scale with statistics of the training
data only, saved with the model). Fitting again replaces the previous fit entirely: the result
depends only on the data, the parameters and the seed.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

_MANIFEST = "plugin.json"


class ModelPlugin(ABC):
    name: ClassVar[str]
    params_type: ClassVar[type]
    input_kind: ClassVar[str] = "flat"

    def __init__(self, params, *, seed: int = 0, threads: int = 1):
        self.params = params
        self.seed = int(seed)
        self.threads = int(threads)
        self.n_outputs: int | None = None

    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray, *, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, sample_weight: np.ndarray | None = None,
            query: np.ndarray | None = None, query_val: np.ndarray | None = None) -> "ModelPlugin":
        """Train on (X, y); early stopping on (X_val, y_val) when given and the parameters ask for it.
        ``query``/``query_val``: each row's bar, read by rankers only (one query per bar)."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, K) float64 predictions, one batched call."""

    def feature_importance(self) -> np.ndarray | None:
        """Per input feature (flat plugins), larger = more useful; None when the model has no such notion."""
        return None

    # ---- persistence --------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """Small JSON-able state beside the model files (subclasses extend)."""
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        pass

    @abstractmethod
    def _save_model(self, directory: Path) -> None: ...

    @abstractmethod
    def _load_model(self, directory: Path) -> None: ...

    def save(self, directory) -> None:
        """Write the fitted model into ``directory`` (created): ``plugin.json`` + the model's files."""
        if self.n_outputs is None:
            raise RuntimeError(f"{self.name}: nothing to save, the model is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_model(directory)
        manifest = {"plugin": self.name, "params": self.params.model_dump(mode="json"), "seed": self.seed,
                    "threads": self.threads, "n_outputs": self.n_outputs, "state": self._state()}
        (directory / _MANIFEST).write_text(json.dumps(manifest, indent=1))

    @classmethod
    def load(cls, directory) -> "ModelPlugin":
        """A plugin saved by :meth:`save`; predictions are identical to the saved one's."""
        directory = Path(directory)
        manifest = json.loads((directory / _MANIFEST).read_text())
        if manifest["plugin"] != cls.name:
            raise ValueError(f"{directory}: holds a {manifest['plugin']} model, not {cls.name}")
        plugin = cls(cls.params_type.model_validate(manifest["params"]), seed=manifest["seed"],
                     threads=manifest["threads"])
        plugin.n_outputs = manifest["n_outputs"]
        plugin._set_state(manifest["state"])
        plugin._load_model(directory)
        return plugin


def plugin_name(directory) -> str:
    """The plugin kind saved in ``directory``."""
    return json.loads((Path(directory) / _MANIFEST).read_text())["plugin"]


def as_2d(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return y[:, None] if y.ndim == 1 else y
