"""Classical in-context learners with the same predict signature as a trained model."""

from iclab.algorithms.gradient_descent import GDPlusPlus, GradientDescent
from iclab.algorithms.learner import Learner, ModelLearner, ZeroPredictor, predict, query_loss
from iclab.algorithms.least_squares import Ridge, bayes_posterior_mean
from iclab.algorithms.tuning import log_grid_search, tune_gd, tune_gd_plus_plus

__all__ = [
    "GDPlusPlus", "GradientDescent", "Learner", "ModelLearner", "Ridge", "ZeroPredictor",
    "bayes_posterior_mean", "log_grid_search", "predict", "query_loss", "tune_gd",
    "tune_gd_plus_plus",
]
