"""What a recipe returns and a run folder's ``summary.json`` holds, as types.

A recipe's ``run`` returns a :class:`RecipeResult`: its headline :class:`Number` s (value,
readable label, unit, the paper's value where the paper gives one, and the value of every
seed), the paper's :class:`Claim` s tested in numbers, the phase table where the recipe finds
phases, the trained models it saved, and recipe-specific details its figures read. The
runner adds what any run has (:class:`RunInfo`: recipe, seeds, versions, device, command,
git commit, wall time) and stores both as one :class:`Summary`. Reports, the command line,
sweeps and the classifier read these attributes, never string keys of a dict.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, SupportsFloat

import numpy as np

from iclab.errors import RunFolderError

Scalar = float | int | None


@dataclasses.dataclass(frozen=True)
class Number:
    """A headline number.

    Attributes:
        value: the number over all seeds (mean unless the recipe says otherwise), or None
            where it is undefined (e.g. no rise was found).
        label: a readable name ("query loss of the trained model").
        unit: what it counts ("½·MSE", "accuracy", "steps"); empty for a pure ratio.
        paper: the paper's value for the same quantity, where the paper gives one.
        per_seed: the value of every seed, in the run's seed order.
    """

    value: Scalar
    label: str
    unit: str = ""
    paper: Scalar = None
    per_seed: tuple[Scalar, ...] = ()

    @property
    def spread(self) -> float | None:
        """The standard deviation over seeds (None with fewer than two defined values)."""
        defined = [v for v in self.per_seed if v is not None and math.isfinite(v)]
        return float(np.std(defined)) if len(defined) > 1 else None


def over_seeds(values: Sequence[Scalar], *, label: str, unit: str = "",
               paper: Scalar = None, reduce: Literal["mean", "median"] = "mean") -> Number:
    """A :class:`Number` from one value per seed: their mean (``reduce="median"``: median)
    over the seeds where it is defined, None where no seed has it."""
    defined = [v for v in values if v is not None]
    if not defined:
        value: Scalar = None
    elif reduce == "median":
        value = float(np.median(defined))
    else:
        value = float(np.mean(defined))
    return Number(value, label, unit, paper, tuple(values))


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim of the paper tested in numbers: ``passed`` is the test on ``value``."""

    statement: str
    value: float
    passed: bool


def claim(statement: str, value: SupportsFloat, passed: bool | np.bool_) -> Claim:
    """A :class:`Claim` (``passed`` made a plain bool, ``value`` a float)."""
    return Claim(statement, float(value), bool(passed))


@dataclasses.dataclass(frozen=True)
class RecipeResult:
    """What a recipe's ``run`` returns.

    Attributes:
        headline: the numbers the paper reports, by name.
        claims: the paper's claims tested in numbers, by name.
        model_size: parameters and state size of the trained model(s)
            (:func:`iclab.models.model_size`).
        phases: the first seed's phase table (rows of the accuracy curve's plateaus and
            their circuits), where the recipe finds phases.
        models: run-folder-relative folders holding the saved trained models
            (``model.npz`` + ``model.json``), the default one first; "." for the run folder.
        details: recipe-specific JSON-ready data that its own figures read.
    """

    headline: Mapping[str, Number]
    claims: Mapping[str, Claim]
    model_size: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    phases: tuple[Mapping[str, Any], ...] = ()
    models: tuple[str, ...] = (".",)
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What any run records beside its recipe's result.

    Attributes:
        recipe: the recipe's name.
        paper: the paper it reproduces, in full.
        seeds: the seeds trained, in order.
        wall_time_s: seconds from start to summary (the last session's, for a resumed run).
        versions: versions of iclab, Python and the JAX stack.
        device: platform and kind of the first device; n_devices: how many there were.
        command: the command line that started the run (None from Python).
        git_commit: the commit of the iclab checkout that ran it, when it is a git checkout
            (``+dirty`` when it had uncommitted changes).
    """

    recipe: str
    paper: str
    seeds: tuple[int, ...]
    wall_time_s: float
    versions: Mapping[str, str]
    device: str
    n_devices: int
    command: str | None = None
    git_commit: str | None = None


@dataclasses.dataclass(frozen=True)
class Summary:
    """A finished run's ``summary.json``: its recipe's result and the run's record."""

    result: RecipeResult
    run: RunInfo

    @property
    def headline(self) -> Mapping[str, Number]:
        return self.result.headline

    @property
    def claims(self) -> Mapping[str, Claim]:
        return self.result.claims

    @property
    def passed(self) -> bool:
        """Whether every claim passed."""
        return all(c.passed for c in self.result.claims.values())

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored as ``summary.json``."""
        return {"run": dataclasses.asdict(self.run), **_result_json(self.result)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "summary.json") -> Summary:
        """Read back :meth:`to_json`'s object; a malformed one raises
        :class:`~iclab.errors.RunFolderError` naming ``where``."""
        try:
            run = data["run"]
            info = RunInfo(**{**run, "seeds": tuple(run["seeds"])})
            result = RecipeResult(
                headline={name: Number(**{**n, "per_seed": tuple(n["per_seed"])})
                          for name, n in data["headline"].items()},
                claims={name: Claim(**c) for name, c in data["claims"].items()},
                model_size=data["model_size"], phases=tuple(data["phases"]),
                models=tuple(data["models"]), details=data["details"])
        except (KeyError, TypeError, AttributeError) as error:
            raise RunFolderError(f"{where}: not an iclab run summary ({error!r}); re-run "
                                 "the recipe, or restore the file") from None
        return cls(result, info)


def _result_json(result: RecipeResult) -> dict[str, Any]:
    return {"headline": {name: dataclasses.asdict(n) for name, n in result.headline.items()},
            "claims": {name: dataclasses.asdict(c) for name, c in result.claims.items()},
            "model_size": dict(result.model_size), "phases": [dict(p) for p in result.phases],
            "models": list(result.models), "details": dict(result.details)}


__all__ = ["Claim", "Number", "RecipeResult", "RunInfo", "Summary", "claim",
           "over_seeds"]
