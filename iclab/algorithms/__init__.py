"""Classical in-context learners with the same predict signature as a trained model, and
their predictions after every prefix of the context in one compiled call; and the
in-context strategies a sequence model is compared with on Markov chains."""

from iclab.algorithms.bayes import DMMSE, dmmse
from iclab.algorithms.fast_weights import FastWeights, LinearTitans, MemoryLearner
from iclab.algorithms.gradient_descent import GDPlusPlus, GradientDescent, OnlineSGD, averaging
from iclab.algorithms.lasso import Lasso
from iclab.algorithms.least_squares import Ridge, bayes_posterior_mean
from iclab.algorithms.markov import (
    bigram_strategy,
    kl_to_strategy,
    markov_strategies,
    ngram_strategy,
    uniform_strategy,
    unigram_strategy,
)
from iclab.algorithms.neighbours import NearestNeighbours, TableLookup
from iclab.algorithms.neural_net import AdamNet
from iclab.algorithms.newton import IterativeNewton
from iclab.algorithms.prefix import (
    ContextLearner,
    GramLearner,
    PointPredictor,
    linear_point_targets,
    masked_context,
    next_point_loss,
    next_point_predictions,
    next_point_targets,
    point_curve,
    point_predictions,
    point_targets,
    prefix_least_squares,
    prefix_moments,
    prefix_predictions,
    stacked_point_predictions,
)
from iclab.algorithms.sequence_classifiers import (
    SGD_LR_GRID,
    knn_logits,
    logistic_regression_logits,
    online_sgd_logits,
    tune_online_sgd_lr,
)
from iclab.algorithms.support import (
    OnCoordinates,
    OnFeatures,
    oracle_point_predictions,
    oracle_prefix_predictions,
)
from iclab.algorithms.trees import BoostedTrees, GreedyTree, SklearnLearner
from iclab.algorithms.tuning import log_grid_search, tune_gd, tune_gd_plus_plus

__all__ = [
    "DMMSE",
    "SGD_LR_GRID",
    "AdamNet",
    "BoostedTrees",
    "ContextLearner",
    "FastWeights",
    "GDPlusPlus",
    "GradientDescent",
    "GramLearner",
    "GreedyTree",
    "IterativeNewton",
    "Lasso",
    "LinearTitans",
    "MemoryLearner",
    "NearestNeighbours",
    "OnCoordinates",
    "OnFeatures",
    "OnlineSGD",
    "PointPredictor",
    "Ridge",
    "SklearnLearner",
    "TableLookup",
    "averaging",
    "bayes_posterior_mean",
    "bigram_strategy",
    "dmmse",
    "kl_to_strategy",
    "knn_logits",
    "linear_point_targets",
    "log_grid_search",
    "logistic_regression_logits",
    "markov_strategies",
    "masked_context",
    "next_point_loss",
    "next_point_predictions",
    "next_point_targets",
    "ngram_strategy",
    "online_sgd_logits",
    "oracle_point_predictions",
    "oracle_prefix_predictions",
    "point_curve",
    "point_predictions",
    "point_targets",
    "prefix_least_squares",
    "prefix_moments",
    "prefix_predictions", "stacked_point_predictions",
    "tune_gd",
    "tune_gd_plus_plus",
    "tune_online_sgd_lr",
    "uniform_strategy",
    "unigram_strategy",
]
