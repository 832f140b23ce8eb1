"""Model plugins: ``fit``, ``predict``, ``save``, ``load`` (see ``models.plugins.base``)."""
from __future__ import annotations

from models.plugins.base import ModelPlugin, plugin_name
from models.plugins.keras_nets import DensePlugin, LSTMPlugin
from models.plugins.trees import LightGBMPlugin, XGBoostPlugin

PLUGINS: dict[str, type[ModelPlugin]] = {
    XGBoostPlugin.name: XGBoostPlugin,
    LightGBMPlugin.name: LightGBMPlugin,
    DensePlugin.name: DensePlugin,
    LSTMPlugin.name: LSTMPlugin,
}


RANKERS = (XGBoostPlugin.name, LightGBMPlugin.name)


def make_plugin(name: str, models_cfg, seed: int, params=None, *, base: bool = False) -> ModelPlugin:
    """A new plugin ``name`` with its parameters from ``models_cfg`` (``ModelsConfig``: the section
    of the same name) unless ``params`` is given. ``base``: an ensemble member, a ranker when
    ``[models.ranking] objective = "rank"`` and it can be one (the trees)."""
    cls = PLUGINS[name]
    extra = {"ranking": models_cfg.ranking} if base and name in RANKERS and models_cfg.ranking.objective == "rank" else {}
    return cls(params if params is not None else getattr(models_cfg, name), seed=seed, threads=models_cfg.threads,
               **extra)


def load_plugin(directory) -> ModelPlugin:
    """Whatever plugin :meth:`ModelPlugin.save` wrote into ``directory``."""
    return PLUGINS[plugin_name(directory)].load(directory)


__all__ = ["ModelPlugin", "PLUGINS", "make_plugin", "load_plugin",
           "XGBoostPlugin", "LightGBMPlugin", "DensePlugin", "LSTMPlugin"]
