"""Classical in-context learners with the same predict signature as a trained model, and
the in-context strategies a sequence model is compared with (Markov chains)."""

from iclab.algorithms.gradient_descent import GDPlusPlus, GradientDescent
from iclab.algorithms.least_squares import Ridge, bayes_posterior_mean
from iclab.algorithms.markov import (
    bigram_strategy,
    kl_to_strategy,
    markov_strategies,
    ngram_strategy,
    uniform_strategy,
    unigram_strategy,
)
from iclab.algorithms.sequence_classifiers import (
    SGD_LR_GRID,
    knn_logits,
    logistic_regression_logits,
    online_sgd_logits,
    tune_online_sgd_lr,
)
from iclab.algorithms.tuning import log_grid_search, tune_gd, tune_gd_plus_plus

__all__ = [
    "SGD_LR_GRID", "GDPlusPlus", "GradientDescent", "Ridge", "bayes_posterior_mean",
    "bigram_strategy", "kl_to_strategy", "knn_logits", "log_grid_search",
    "logistic_regression_logits", "markov_strategies", "ngram_strategy", "online_sgd_logits",
    "tune_gd", "tune_gd_plus_plus", "tune_online_sgd_lr", "uniform_strategy",
    "unigram_strategy",
]
