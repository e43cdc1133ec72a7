"""The task interface: a distribution of episodes, sampled as a pure function of a key."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from jaxtyping import PRNGKeyArray

from iclab.tasks.classification import ClassificationEpisode
from iclab.tasks.episode import RegressionEpisode
from iclab.tasks.gpicl import GPICLEpisode
from iclab.tasks.markov import MarkovEpisode
from iclab.tasks.recall import RecallEpisode

Episode = (RegressionEpisode | ClassificationEpisode | GPICLEpisode | MarkovEpisode
           | RecallEpisode)
"""Any episode type a task produces (batched or, under ``vmap``, one episode)."""


@runtime_checkable
class Task(Protocol):
    """A task distribution. ``sample`` must be a pure function of ``key`` (same key, same
    episodes) and traceable, so training can draw batches inside the compiled step."""

    def sample(self, key: PRNGKeyArray, batch_size: int) -> Any:
        """A batch of ``batch_size`` independent episodes, batch axis first."""
        ...
