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
from iclab.tasks.function_regression import (
    FUNCTION_CLASSES,
    FunctionRegression,
    quadratic_features,
    random_rotation,
)
from iclab.tasks.gpicl import GPICLEpisode, GPICLTask
from iclab.tasks.gpicl import evaluation_sets as gpicl_evaluation_sets
from iclab.tasks.linear_regression import LinearRegression, TaskSwitch
from iclab.tasks.markov import InContextMarkovChain, MarkovEpisode, stationary_distribution
from iclab.tasks.markov import evaluation_sets as markov_evaluation_sets
from iclab.tasks.prompt_shifts import (
    DISTRIBUTION_SHIFTS,
    PROMPT_SHIFTS,
    QUERY_SHIFTS,
    shifted_prompts,
    shifted_task,
)
from iclab.tasks.recall import (
    AssociativeRecall,
    RecallEpisode,
    VectorRecall,
    recall_evaluation_sets,
)

__all__ = [
    "DISTRIBUTION_SHIFTS",
    "FUNCTION_CLASSES",
    "PROMPT_SHIFTS",
    "QUERY_SHIFTS",
    "AssociativeRecall",
    "BurstyClassification",
    "ClassificationEpisode",
    "ConceptRegression",
    "FunctionRegression",
    "GPICLEpisode",
    "GPICLTask",
    "InContextMarkovChain",
    "InContextMetaLearning",
    "LinearRegression",
    "MarkovEpisode",
    "RecallEpisode",
    "RegressionEpisode",
    "Task",
    "TaskSwitch",
    "VectorRecall",
    "evaluation_sets",
    "gpicl_evaluation_sets",
    "markov_evaluation_sets",
    "quadratic_features",
    "random_rotation",
    "recall_evaluation_sets",
    "shifted_prompts",
    "shifted_task",
    "stationary_distribution",
]
