"""A meta-trained in-context learner as a scikit-learn-style classifier of any table.

Kirsch et al. (2022, "General-Purpose In-Context Learning by Meta-Learning Transformers")
meta-train a sequence model on randomly projected, label-permuted datasets; the result is a
learning algorithm: given labelled examples in its context it classifies new inputs,
on datasets it never saw. :class:`ICLClassifier` puts a user's table into the form the
model was meta-trained on and runs it:

- inputs are z-normalised with the context's (``fit``'s) statistics, constant features set
  to 0 (as :func:`iclab.data.load_dataset` does), then projected to the model's input size
  by a random matrix with entries ``N(0, 1/n_x)``, ``n_x`` the features that vary — the
  GPICL task's convention (:mod:`iclab.tasks.gpicl`), so a table of any width fits;
- the user's classes are numbered ``0 … C − 1`` in sorted order (the model was trained on
  random label permutations, so any numbering is as good), ``C`` at most the model's
  output size; probabilities are the softmax over those ``C`` logits;
- each query is read after the whole context, as the token ``[x_q ; one-hot(y_last)]``
  that follows it (:class:`~iclab.formats.SequenceLabelTokens`).

>>> clf = ICLClassifier.from_run("runs/kirsch-...").fit(X_train, y_train)
>>> clf.predict(X_test)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from iclab.data.datasets import standardise
from iclab.formats.gpicl import SequenceLabelTokens
from iclab.tasks.gpicl import GPICLEpisode
from iclab.train.saved_model import load_trained_model


class ICLClassifier:
    """``fit`` stores the context; ``predict`` / ``predict_proba`` run the trained model.

    Args:
        model: a sequence model meta-trained on GPICL tokens (``input_dim + n_classes``
            wide, ``n_classes`` logits per position).
        input_dim: the projected input size it was trained on.
        n_classes: its output size.
        max_context: the most examples a context may hold (the training sequence length
            minus one: positions beyond it were never trained); ``fit`` keeps a random
            subset of that many when given more.
        random_state: seed of the projection, the context's order and its subset.
    """

    def __init__(self, model: eqx.Module, input_dim: int, n_classes: int, max_context: int,
                 random_state: int = 0):
        self.model, self.input_dim, self.n_classes = model, input_dim, n_classes
        self.max_context, self.random_state = max_context, random_state
        self.format = SequenceLabelTokens(n_classes=n_classes)

    @classmethod
    def from_run(cls, run_dir: str | Path, model: str | None = None, seed_index: int = 0,
                 random_state: int = 0) -> ICLClassifier:
        """The learner a GPICL run trained (``iclab run kirsch`` or ``rnn-vs-transformer``).

        ``run_dir`` is a run folder or one of its model folders (those holding
        ``model.json``); in a run with several models, ``model`` names the folder (default:
        the run's ``default_model``, e.g. the largest task pool). ``seed_index`` picks one
        of the seeds trained together.
        """
        folder = _model_folder(Path(run_dir), model)
        trained = load_trained_model(folder)
        task = trained.about.get("task", {})
        if trained.about.get("task_kind") != "GPICLTask":
            raise ValueError(f"{folder}/model.json: the model was trained on "
                             f"{trained.about.get('task_kind')!r} tasks, not GPICL sequences "
                             "(the classifier needs a kirsch or rnn-vs-transformer run)")
        if not 0 <= seed_index < len(trained.models):
            raise ValueError(f"seed_index={seed_index} is invalid: {folder} holds "
                             f"{len(trained.models)} seeds (0 … {len(trained.models) - 1})")
        return cls(trained.models[seed_index], task["input_dim"], task["n_classes"],
                   task["seq_len"] - 1, random_state)

    def fit(self, X: Any, y: Any) -> ICLClassifier:
        """Store ``(X, y)`` as the context (a seeded shuffle; at most ``max_context``)."""
        X, y = _table(X, "X"), np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"y must be one label per row of X ({len(X)}), got shape {y.shape}")
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) > self.n_classes:
            raise ValueError(f"y has {len(self.classes_)} classes, more than the "
                             f"{self.n_classes} outputs the model was meta-trained with")
        rng = np.random.default_rng(self.random_state)
        keep = rng.permutation(len(X))[: self.max_context]
        self._X, self._labels = X[keep], labels[keep].astype(np.int32)
        self.n_features_in_ = X.shape[1]
        varies = np.count_nonzero(self._X.std(axis=0) > 0)
        projection = jax.random.normal(jax.random.key(self.random_state),
                                       (self.input_dim, self.n_features_in_))
        self._projection = projection / math.sqrt(max(varies, 1))  # A_ij ~ N(0, 1/n_x)
        return self

    def predict_proba(self, X: Any) -> Float[np.ndarray, "n classes"]:
        """Class probabilities of each row of ``X``, columns in the order of ``classes_``."""
        self._check_fitted()
        X = _table(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features; fit saw {self.n_features_in_}")
        context, queries = standardise(self._X, X)
        logits = _query_logits(self.model, self.format, self._project(context),
                               jnp.asarray(self._labels), self._project(queries))
        return np.asarray(jax.nn.softmax(logits[:, : len(self.classes_)], axis=-1))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row of ``X`` (labels as given to ``fit``)."""
        self._check_fitted()
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on ``(X, y)``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise ValueError("call fit(X, y) with the context examples before predicting")

    def _project(self, x: np.ndarray) -> Array:
        return jnp.asarray(x) @ self._projection.T


@eqx.filter_jit
def _query_logits(model: eqx.Module, format: SequenceLabelTokens,
                  context: Float[Array, "n d"], labels: Array, queries: Float[Array, "q d"]
                  ) -> Float[Array, "q classes"]:
    """Each query's logits read after the whole context (one sequence per query)."""
    def one(query: Float[Array, " d"]) -> Float[Array, " classes"]:
        x = jnp.concatenate([context, query[None]])
        # The query's own label is never read (its token carries the previous label).
        episode = GPICLEpisode(x=x, labels=jnp.concatenate([labels, labels[:1]]),
                               classes=jnp.zeros(len(x), jnp.int32),
                               task_id=jnp.zeros((), jnp.int32))
        return format.decode(model(format.encode(episode)))[-1]

    return jax.lax.map(one, queries, batch_size=256)


def _table(X: Any, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"{name} must be a non-empty 2-D table (rows × features), "
                         f"got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return X


def _model_folder(run_dir: Path, model: str | None) -> Path:
    """The folder holding ``model.json``: ``run_dir`` itself, or its named model."""
    if (run_dir / "model.json").exists() and model is None:
        return run_dir
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder (made by `iclab run`)")
    available = sorted(str(p.parent.relative_to(run_dir)) for p in run_dir.rglob("model.json"))
    if model is None:
        summary = run_dir / "summary.json"
        model = json.loads(summary.read_text()).get("default_model") if summary.exists() else None
    if model is None or model not in available:
        raise FileNotFoundError(f"{run_dir}: no trained model {model!r}; it holds "
                                f"{available or 'none (is the run finished?)'}")
    return run_dir / model
