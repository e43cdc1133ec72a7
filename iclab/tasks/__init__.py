"""Task distributions: pure functions of a PRNG key that return batches of episodes."""

from iclab.tasks.base import Task
from iclab.tasks.episode import RegressionEpisode
from iclab.tasks.linear_regression import LinearRegression

__all__ = ["LinearRegression", "RegressionEpisode", "Task"]
