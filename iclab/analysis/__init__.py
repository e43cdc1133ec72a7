"""Metrics as pure functions: per-example values, the caller reduces."""

from iclab.analysis.comparison import (
    prediction_difference,
    sensitivities,
    sensitivity_cosine,
    sensitivity_difference,
    squared_prediction_difference,
)
from iclab.analysis.curves import icl_curve, shift_curve
from iclab.analysis.weights import best_scale, relative_error_after_scale

__all__ = [
    "best_scale", "icl_curve", "prediction_difference", "relative_error_after_scale",
    "sensitivities", "sensitivity_cosine", "sensitivity_difference", "shift_curve",
    "squared_prediction_difference",
]
