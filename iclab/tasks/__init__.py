"""Task distributions: pure functions of a PRNG key that return batches of episodes."""

from iclab.tasks.base import Task
from iclab.tasks.classification import (
    BurstyClassification,
    ClassificationEpisode,
    InContextMetaLearning,
    evaluation_sets,
)
from iclab.tasks.episode import RegressionEpisode
from iclab.tasks.gpicl import GPICLEpisode, GPICLTask
from iclab.tasks.gpicl import evaluation_sets as gpicl_evaluation_sets
from iclab.tasks.linear_regression import LinearRegression

__all__ = [
    "BurstyClassification", "ClassificationEpisode", "GPICLEpisode", "GPICLTask",
    "InContextMetaLearning", "LinearRegression", "RegressionEpisode", "Task", "evaluation_sets",
    "gpicl_evaluation_sets",
]
