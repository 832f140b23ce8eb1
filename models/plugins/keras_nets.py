"""Keras (TensorFlow) networks: the blueprint's dense net and an LSTM over recent bars.

TensorFlow is imported on the first fit or load (it costs 3-5 s), never at module import.
Training is a small compiled loop (Adam on the Huber loss, mini-batches in a seeded random order
each epoch; optional early stopping on a validation set, keeping the best epoch's weights):
Keras' own ``fit`` costs about three times more per epoch here through its input pipeline.
Determinism: ``keras.utils.set_random_seed(seed)`` before building, seeded dropout, TensorFlow's
op determinism; two fits with the same data and seed predict identically.
Speed: a plugin keeps its compiled model between fits and only resets the weights (dropout seed
states included) and the optimiser's state to their seeded initial values, so a walk-forward
traces the training graph once instead of at every retrain; the result equals a freshly built
model's (tested). Inference is one compiled call for the whole batch, never an eager call per row.
Inputs are imputed with the training median and standardised with the training mean and
standard deviation; targets are standardised too (so the Huber delta is in standard deviations).
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from config.schema import DenseParams, LSTMParams
from models.plugins.base import ModelPlugin, as_2d

# Standardised inputs are clipped to this many standard deviations: one extreme bar (a volume
# spike, a split) must not dominate a batch's gradients.
_CLIP_SD = 5.0


@contextlib.contextmanager
def _stderr_silenced():
    """TensorFlow's C++ start-up notes (oneDNN, CPU features) go to file descriptor 2 before its
    log level applies: a user's terminal shows none of them. Python errors still raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def keras_backend(threads: int):
    """Import Keras on TensorFlow, quietly, deterministic, with ``threads`` CPU threads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_silenced():
        import keras
        import tensorflow as tf

    try:  # only possible before TensorFlow starts its runtime; later calls keep the first setting
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass
    tf.config.experimental.enable_op_determinism()
    tf.get_logger().setLevel("ERROR")  # one traced inference function per plugin is by design
    return keras, tf


class KerasPlugin(ModelPlugin):
    """Shared fit/predict/save of the networks; subclasses build the layers."""

    def __init__(self, params, *, seed=0, threads=1):
        super().__init__(params, seed=seed, threads=threads)
        self._model = None
        self._initial: list[np.ndarray] | None = None  # seeded initial values of every model variable
        self._forward = None  # the model's inference pass, traced once for any batch size
        self._scalers: dict[str, np.ndarray] = {}

    def _build(self, keras, input_shape: tuple, n_outputs: int):
        raise NotImplementedError

    # ---- scaling (training data only) ---------------------------------------------------------
    def _fit_scalers(self, X: np.ndarray, y: np.ndarray) -> None:
        flat = X.reshape(-1, X.shape[-1]).astype(np.float64)
        with np.errstate(all="ignore"):
            finite = np.isfinite(flat).any(axis=0)
            median = np.where(finite, np.nanmedian(np.where(finite, flat, 0.0), axis=0), 0.0)
            filled = np.where(np.isfinite(flat), flat, median)
            std = filled.std(axis=0)
        self._scalers = {"median": median, "mean": filled.mean(axis=0), "std": np.where(std > 0, std, 1.0),
                         "y_mean": y.mean(axis=0), "y_std": np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)}

    def _transform(self, X: np.ndarray) -> np.ndarray:
        s = self._scalers
        X = np.where(np.isfinite(X), X, s["median"])
        return np.clip((X - s["mean"]) / s["std"], -_CLIP_SD, _CLIP_SD).astype(np.float32)

    # ---- fit / predict --------------------------------------------------------------------------
    def _compile(self, keras, tf, shape: tuple, n_outputs: int) -> None:
        """Build the seeded model and trace its training step and inference pass once."""
        keras.utils.set_random_seed(self.seed)
        model = self._model = self._build(keras, shape, n_outputs)
        optimizer = keras.optimizers.Adam(self.params.learning_rate)
        optimizer.build(model.trainable_variables)
        loss_fn = keras.losses.Huber(delta=self.params.huber_delta)
        x_spec = tf.TensorSpec((None, *shape), tf.float32)
        y_spec, w_spec = tf.TensorSpec((None, n_outputs), tf.float32), tf.TensorSpec((None,), tf.float32)

        @tf.function(input_signature=[x_spec, y_spec, w_spec])
        def train_step(x, y, w):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True), sample_weight=w)
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            return loss

        @tf.function(input_signature=[x_spec, y_spec])
        def validation_loss(x, y):
            return loss_fn(y, model(x, training=False))

        self._optimizer, self._train_step, self._validation_loss = optimizer, train_step, validation_loss
        self._trace_forward(tf)
        self._initial = [v.numpy() for v in model.variables]

    def _reset(self) -> None:
        """Back to the seeded initial weights (dropout seed states included) and a fresh optimiser."""
        for variable, value in zip(self._model.variables, self._initial):
            variable.assign(value)
        for variable in self._optimizer.variables:
            if not variable.path.endswith("learning_rate"):
                variable.assign(np.zeros(variable.shape, dtype=variable.dtype))

    def fit(self, X, y, *, X_val=None, y_val=None, sample_weight=None, query=None, query_val=None):
        keras, tf = keras_backend(self.threads)
        p, y = self.params, as_2d(y)
        self._fit_scalers(X, y)
        Xs, ys = self._transform(X), self._scale_targets(y)
        weight = np.ones(len(Xs), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
        if self._initial is None or tuple(self._model.input_shape[1:]) != Xs.shape[1:] \
                or self._model.output_shape[-1] != y.shape[1]:
            self._compile(keras, tf, Xs.shape[1:], y.shape[1])
        else:
            self._reset()
        early = X_val is not None and len(X_val) > 0 and p.patience > 0
        if early:
            Xv, yv = self._transform(X_val), self._scale_targets(as_2d(y_val))
            best, best_weights, waited = np.inf, None, 0
        rng = np.random.default_rng(self.seed)
        for _ in range(p.epochs):
            order = rng.permutation(len(Xs))
            for start in range(0, len(Xs), p.batch_size):
                batch = order[start:start + p.batch_size]
                self._train_step(Xs[batch], ys[batch], weight[batch])
            if early:
                loss = float(self._validation_loss(Xv, yv))
                if loss < best:
                    best, best_weights, waited = loss, self._model.get_weights(), 0
                else:
                    waited += 1
                    if waited >= p.patience:
                        break
        if early and best_weights is not None:
            self._model.set_weights(best_weights)
        self.n_outputs = y.shape[1]
        return self

    def _scale_targets(self, y: np.ndarray) -> np.ndarray:
        return ((y - self._scalers["y_mean"]) / self._scalers["y_std"]).astype(np.float32)

    def _trace_forward(self, tf) -> None:
        model = self._model
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def predict(self, X):
        out = self._forward(self._transform(np.asarray(X))).numpy().astype(np.float64)
        return out.reshape(len(X), self.n_outputs) * self._scalers["y_std"] + self._scalers["y_mean"]

    # ---- persistence ----------------------------------------------------------------------------
    def _save_model(self, directory: Path):
        with warnings.catch_warnings():
            # Keras 3.15's saver converts TensorFlow variables the NumPy 1 way; harmless, noisy on NumPy 2
            warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                                    category=DeprecationWarning)
            self._model.save(directory / "model.keras")
        np.savez(directory / "scalers.npz", **self._scalers)

    def _load_model(self, directory: Path):
        keras, tf = keras_backend(self.threads)
        self._model = keras.models.load_model(directory / "model.keras", compile=False)
        self._trace_forward(tf)
        with np.load(directory / "scalers.npz") as data:
            self._scalers = {k: data[k] for k in data.files}
        self._initial = None  # a later fit builds and compiles afresh


class DensePlugin(KerasPlugin):
    """Dense -> BatchNorm -> ReLU -> Dropout per hidden layer, one linear output per target;
    Huber loss, Adam (the blueprint: 512-256-128-64, dropout 0.3, Adam 0.001, three outputs)."""

    name = "dense"
    params_type = DenseParams

    def _build(self, keras, input_shape, n_outputs):
        L, p = keras.layers, self.params
        inputs = keras.Input(shape=input_shape)
        h = inputs
        for units in p.layers:
            h = L.Dense(units)(h)
            h = L.BatchNormalization()(h)
            h = L.Activation("relu")(h)
            h = L.Dropout(p.dropout, seed=self.seed)(h)
        return keras.Model(inputs, L.Dense(n_outputs)(h))


class LSTMPlugin(KerasPlugin):
    """Stacked LSTM over (seq_len, k) sequences (see ``models.dataset.sequences``), dropout after
    each layer, one linear output per target."""

    name = "lstm"
    params_type = LSTMParams
    input_kind = "sequence"

    def _build(self, keras, input_shape, n_outputs):
        L, p = keras.layers, self.params
        inputs = keras.Input(shape=input_shape)
        h = inputs
        for i, units in enumerate(p.units):
            h = L.LSTM(units, return_sequences=i < len(p.units) - 1, seed=self.seed)(h)
            h = L.Dropout(p.dropout, seed=self.seed)(h)
        return keras.Model(inputs, L.Dense(n_outputs)(h))
