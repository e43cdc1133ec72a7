"""A meta-trained in-context learner as a scikit-learn classifier of any table.

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

It follows scikit-learn's estimator conventions, so ``clone``, ``Pipeline``,
``GridSearchCV`` and ``cross_val_score`` work with it:

>>> clf = ICLClassifier("runs/kirsch").fit(X_train, y_train)  # doctest: +SKIP
>>> clf.predict(X_test)  # doctest: +SKIP
>>> contexts = StratifiedShuffleSplit(5, train_size=29)  # a kirsch learner reads 29 rows
>>> cross_val_score(ICLClassifier("runs/kirsch"), X, y, cv=contexts)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from numbers import Integral
from pathlib import Path
from typing import Any, no_type_check

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from iclab.config import require
from iclab.errors import ConfigError
from iclab.formats.gpicl import SequenceLabelTokens
from iclab.results import Summary
from iclab.store import RunStore
from iclab.tasks.gpicl import GPICLEpisode
from iclab.train.saved_model import load_trained_model

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6: the same check is a method of BaseEstimator
    def validate_data(estimator: BaseEstimator, X: Any = "no_validation",
                      y: Any = "no_validation", **check_params: Any) -> Any:
        return estimator._validate_data(X, y, **check_params)

Z_LIMIT = 1e4
"""Normalised inputs are clipped to ``±Z_LIMIT`` standard deviations of the context: a query
that far out is an outlier either way, and the clip keeps the model's float32 arithmetic
finite for inputs up to the largest float64."""

QUERY_BATCH = 64
"""Queries run in chunks of this many (see :func:`_query_logits`)."""


class ContextTruncatedWarning(UserWarning):
    """``fit`` got more rows than the learner's context holds and kept a random subset."""


@dataclasses.dataclass(frozen=True)
class MetaTrainedLearner:
    """A sequence model meta-trained on GPICL tokens, as :class:`ICLClassifier` runs it.

    Attributes:
        model: the module (``input_dim + n_classes`` wide tokens in, ``n_classes`` logits
            per position out).
        input_dim: the projected input size it was meta-trained on.
        n_classes: its output size, the most classes a table may have.
        max_context: the most examples a context may hold (the meta-training sequence
            length minus one: positions beyond it were never trained).
        folder: the model folder it was loaded from.
    """

    model: eqx.Module
    input_dim: int
    n_classes: int
    max_context: int
    folder: Path


class ICLClassifier(ClassifierMixin, BaseEstimator):
    """A meta-trained in-context learner as a scikit-learn classifier: ``fit`` stores the
    context, ``predict`` / ``predict_proba`` run the model on context + query.

    Nothing is loaded or checked at construction (scikit-learn's rule, which ``clone``
    relies on); ``fit`` loads the model (cached per process, so the clones that
    ``cross_val_score`` or ``GridSearchCV`` fit share one copy) and raises what is wrong.

    Args:
        run_dir: a run folder of a GPICL recipe (``iclab run kirsch`` or
            ``rnn-vs-transformer``), or one of its model folders (those holding
            ``model.json``).
        model: in a run with several models, the folder to use (default: the run's first
            saved model, e.g. the largest task pool).
        seed_index: which of the seeds trained together.
        max_context: the most rows ``fit`` keeps as the context, at most the learner's
            limit (its meta-training sequence length minus one); ``None``: that limit.
            Given more rows, ``fit`` keeps a random subset and warns
            (:class:`ContextTruncatedWarning`).
        random_state: seed of the projection, of the context's order and of its subset
            (an int, a ``numpy.random.RandomState``, or ``None`` for a fresh draw).

    Attributes:
        classes_: the labels seen by ``fit``, sorted; column order of ``predict_proba``.
        n_features_in_: the table's width at ``fit`` (``feature_names_in_`` too when ``X``
            was a DataFrame with string column names).
        max_context_: the context limit ``fit`` applied.
        n_context_: the rows ``fit`` kept as the context.
        learner_: the :class:`MetaTrainedLearner` ``fit`` ran (``None`` in a pickle, which
            holds the context, not the model; the first prediction reloads it from
            ``run_dir``).
    """

    @no_type_check  # scikit-learn's rule: __init__ stores any value, fit checks it
    def __init__(self, run_dir: str | Path | None = None, model: str | None = None,
                 seed_index: Integral = 0, max_context: Integral | None = None,
                 random_state: Integral | np.random.RandomState | None = 0):
        self.run_dir = run_dir
        self.model = model
        self.seed_index = seed_index
        self.max_context = max_context
        self.random_state = random_state

    @classmethod
    def from_run(cls, run_dir: str | Path, model: str | None = None, seed_index: int = 0,
                 random_state: int = 0) -> ICLClassifier:
        """The classifier of a run's learner, loaded now (so a wrong folder, model or seed
        fails here, not at ``fit``), with ``max_context`` set to the learner's limit."""
        learner = _load_learner(run_dir, model, seed_index)
        clf = cls(run_dir, model, seed_index, learner.max_context, random_state)
        clf._loaded = ((run_dir, model, seed_index), learner)
        return clf

    @property
    def learner(self) -> MetaTrainedLearner:
        """The learner the parameters name (loaded on first use, cached)."""
        key = (self.run_dir, self.model, self.seed_index)
        loaded = getattr(self, "_loaded", None)
        if loaded is None or loaded[0] != key:
            if self.run_dir is None:
                raise ConfigError("run_dir=None is invalid: pass the run folder of a kirsch "
                                  "or rnn-vs-transformer run, e.g. ICLClassifier('runs/...')")
            self._loaded = loaded = (key, _load_learner(*key))
        return loaded[1]

    @property
    def input_dim(self) -> int:
        """The learner's projected input size."""
        return self.learner.input_dim

    @property
    def n_classes(self) -> int:
        """The learner's output size: the most classes a table may have."""
        return self.learner.n_classes

    def fit(self, X: Any, y: Any) -> ICLClassifier:
        """Store ``(X, y)`` as the context: a seeded shuffle, at most ``max_context`` rows.

        Raises ``ValueError`` for NaN or infinite values in ``X`` or ``y``, continuous
        labels, or more classes than the learner's outputs.
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        learner = self.learner
        limit = learner.max_context
        if self.max_context is not None:
            require(isinstance(self.max_context, Integral) and 1 <= self.max_context <= limit,
                    "max_context", self.max_context,
                    f"must be None or an integer in [1, {limit}] (the learner at "
                    f"{learner.folder} was meta-trained on contexts of {limit} examples)")
            limit = int(self.max_context)
        classes, labels = np.unique(y, return_inverse=True)
        if len(classes) > learner.n_classes:
            raise ValueError(f"y has {len(classes)} classes, more than the "
                             f"{learner.n_classes} outputs the model was meta-trained with")
        if len(X) > limit:
            holds = (f"max_context={limit}" if self.max_context is not None else
                     f"the {limit} a context of this learner holds (it was meta-trained on "
                     f"sequences of {limit + 1})")
            warnings.warn(f"fit got {len(X)} rows, more than {holds}; it keeps a random "
                          f"{limit}. Pass at most {limit} rows to choose them yourself",
                          ContextTruncatedWarning, stacklevel=2)
        seed = _seed(self.random_state)
        keep = np.random.default_rng(seed).permutation(len(X))[:limit]
        context = X[keep]
        self._scale, self._mean, self._std = _statistics(context)
        varies = np.count_nonzero(self._std > 0)
        projection = jax.random.normal(jax.random.key(seed), (learner.input_dim, X.shape[1]))
        # A_ij ~ N(0, 1/n_x), n_x the features that vary (the GPICL task's projection).
        self._projection = np.asarray(projection, np.float64) / math.sqrt(max(varies, 1))
        self._context = self._project(context)
        self._labels = labels[keep].astype(np.int32)
        self.classes_, self.max_context_, self.n_context_ = classes, limit, len(keep)
        self.learner_ = learner
        return self

    def predict_log_proba(self, X: Any) -> Float[np.ndarray, "n classes"]:
        """Log-probabilities of each class for each row of ``X`` (columns as ``classes_``)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        learner = self.learner_
        if learner is None:  # unpickled: reload the model fit ran
            learner = self.learner_ = self.learner
        logits = _query_logits(learner.model, SequenceLabelTokens(learner.n_classes),
                               jnp.asarray(self._context), jnp.asarray(self._labels),
                               self._project(X))
        logits = logits[:, : len(self.classes_)].astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def predict_proba(self, X: Any) -> Float[np.ndarray, "n classes"]:
        """Class probabilities of each row of ``X``, columns in the order of ``classes_``."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row of ``X`` (labels as given to ``fit``)."""
        log_proba = self.predict_log_proba(X)
        return self.classes_[np.argmax(log_proba, axis=1)]

    def __getstate__(self) -> dict[str, Any]:
        # Equinox modules do not pickle (their activations are jax functions): the pickle
        # holds the parameters and the fitted context, and the model reloads from run_dir.
        state = super().__getstate__()
        state.pop("_loaded", None)
        if "learner_" in state:
            state["learner_"] = None
        return state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        # How well it classifies depends on its meta-training, which no tag can know: a
        # briefly trained learner fails scikit-learn's accuracy bar on its test blobs.
        tags.classifier_tags.poor_score = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # the tags of scikit-learn < 1.6
        return {"poor_score": True}

    def _project(self, x: Float[np.ndarray, "n features"]) -> Float[np.ndarray, "n input"]:
        z = _normalise(x, self._scale, self._mean, self._std)
        return (z @ self._projection.T).astype(np.float32)


def _statistics(x: Float[np.ndarray, "n features"]
                ) -> tuple[Float[np.ndarray, " features"], Float[np.ndarray, " features"],
                           Float[np.ndarray, " features"]]:
    """Each column's scale (largest magnitude), and mean and std after dividing by it.

    Dividing first brings every column into [−1, 1], so the squares of the std cannot
    overflow however large the values (a column of 1e300s has std 0 or a finite one).
    """
    scale = np.max(np.abs(x), axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    unit = x / scale
    return scale, unit.mean(axis=0), unit.std(axis=0)


def _normalise(x: Float[np.ndarray, "n features"], scale: Float[np.ndarray, " features"],
               mean: Float[np.ndarray, " features"], std: Float[np.ndarray, " features"]
               ) -> Float[np.ndarray, "n features"]:
    """Z-scores with the context's statistics, constant features 0, clipped to ±Z_LIMIT."""
    varies = std > 0
    with np.errstate(over="ignore"):  # a query far beyond the context's scale: clipped
        z = np.where(varies, (x / scale - mean) / np.where(varies, std, 1.0), 0.0)
    return np.clip(z, -Z_LIMIT, Z_LIMIT)


def _seed(random_state: Integral | np.random.RandomState | None) -> int:
    if isinstance(random_state, Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _query_logits(model: eqx.Module, format: SequenceLabelTokens,
                  context: Float[Array, "n d"], labels: Array,
                  queries: Float[np.ndarray, "q d"]) -> Float[np.ndarray, "q classes"]:
    """Each query's logits read after the whole context.

    Queries run in chunks of ``QUERY_BATCH`` (the last one padded): one compiled program
    per context length, and a query's logits do not depend on which others share its
    chunk (scikit-learn checks that predicting a subset gives the same numbers).
    """
    padded = np.zeros((-(-len(queries) // QUERY_BATCH) * QUERY_BATCH, queries.shape[1]),
                      np.float32)
    padded[: len(queries)] = queries
    chunks = [_chunk_logits(model, format, context, labels, jnp.asarray(chunk))
              for chunk in np.split(padded, len(padded) // QUERY_BATCH)]
    return np.concatenate([np.asarray(chunk) for chunk in chunks])[: len(queries)]


@eqx.filter_jit
def _chunk_logits(model: eqx.Module, format: SequenceLabelTokens,
                  context: Float[Array, "n d"], labels: Array,
                  queries: Float[Array, "q d"]) -> Float[Array, "q classes"]:
    def one(query: Float[Array, " d"]) -> Float[Array, " classes"]:
        x = jnp.concatenate([context, query[None]])
        # The query's own label is never read (its token carries the previous label).
        episode = GPICLEpisode(x=x, labels=jnp.concatenate([labels, labels[:1]]),
                               classes=jnp.zeros(len(x), jnp.int32),
                               task_id=jnp.zeros((), jnp.int32))
        return format.decode(model(format.encode(episode)))[-1]

    return jax.vmap(one)(queries)


_LOADED: dict[tuple[str, tuple[int, ...], int], MetaTrainedLearner] = {}
_LOADED_MAX = 8


def _load_learner(run_dir: str | Path, model: str | None, seed_index: Integral
                  ) -> MetaTrainedLearner:
    """The named learner, from a per-process cache while its files are unchanged."""
    folder = _model_folder(Path(run_dir), model)
    stamp = tuple(path.stat().st_mtime_ns for path in sorted(folder.glob("model.*")))
    key = (str(folder.resolve()), stamp, int(seed_index))
    if key not in _LOADED:
        trained = load_trained_model(folder)
        task = trained.about.get("task", {})
        if trained.about.get("task_kind") != "GPICLTask":
            raise ValueError(f"{folder}/model.json: the model was trained on "
                             f"{trained.about.get('task_kind')!r} tasks, not GPICL sequences "
                             "(the classifier needs a kirsch or rnn-vs-transformer run)")
        require(0 <= seed_index < len(trained.models), "seed_index", seed_index,
                f"{folder} holds {len(trained.models)} seeds (0 … {len(trained.models) - 1})")
        while len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = MetaTrainedLearner(trained.models[int(seed_index)], task["input_dim"],
                                          task["n_classes"], task["seq_len"] - 1, folder)
    return _LOADED[key]


def _model_folder(run_dir: Path, model: str | None) -> Path:
    """The folder holding ``model.json``: ``run_dir`` itself, or its named model."""
    if (run_dir / "model.json").exists() and model is None:
        return run_dir
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder (made by `iclab run`)")
    available = sorted(str(p.parent.relative_to(run_dir)) for p in run_dir.rglob("model.json"))
    if model is None and (run_dir / "summary.json").exists():
        stored = RunStore(run_dir).read_json("summary.json")
        models = Summary.from_json(stored, where=str(run_dir / "summary.json")).result.models
        model = models[0] if models else None
    if model is None or model not in available:
        raise FileNotFoundError(f"{run_dir}: no trained model {model!r}; it holds "
                                f"{available or 'none (is the run finished?)'}")
    return run_dir / model

