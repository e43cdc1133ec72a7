"""Task distributions: pure functions of a PRNG key that return batches of episodes."""

from iclab.tasks.base import Task
from iclab.tasks.classification import (
    BurstyClassification,
    ClassificationEpisode,
    InContextMetaLearning,
    evaluation_sets,
)
from iclab.tasks.concepts import ConceptRegression
from iclab.tasks.episode import RegressionEpisode
from iclab.tasks.gpicl import GPICLEpisode, GPICLTask
from iclab.tasks.gpicl import evaluation_sets as gpicl_evaluation_sets
from iclab.tasks.linear_regression import LinearRegression
from iclab.tasks.markov import InContextMarkovChain, MarkovEpisode, stationary_distribution
from iclab.tasks.markov import evaluation_sets as markov_evaluation_sets
from iclab.tasks.recall import (
    AssociativeRecall,
    RecallEpisode,
    VectorRecall,
    recall_evaluation_sets,
)

__all__ = [
    "AssociativeRecall",
    "BurstyClassification",
    "ClassificationEpisode",
    "ConceptRegression",
    "GPICLEpisode",
    "GPICLTask",
    "InContextMarkovChain",
    "InContextMetaLearning",
    "LinearRegression",
    "MarkovEpisode",
    "RecallEpisode",
    "RegressionEpisode",
    "Task",
    "VectorRecall",
    "evaluation_sets",
    "gpicl_evaluation_sets",
    "markov_evaluation_sets",
    "recall_evaluation_sets",
    "stationary_distribution",
]
