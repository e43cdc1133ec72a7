"""Metrics as pure functions: per-example values, the caller reduces."""

from iclab.analysis.circuits import (
    bigram,
    chunk_example,
    context_label_accuracy,
    ila1,
    induction_strength,
    label_attention,
    prefix_matching_score,
    previous_token_score,
    repeated_random_tokens,
    tila2,
    tla2,
)
from iclab.analysis.comparison import (
    error_cosine,
    implicit_weights,
    prediction_cosine,
    prediction_difference,
    sensitivities,
    sensitivity_cosine,
    sensitivity_difference,
    squared_prediction_difference,
    weight_distance,
)
from iclab.analysis.curves import icl_curve, shift_curve
from iclab.analysis.decoding import (
    decodability,
    decodability_probe,
    knn_classify,
    patch_scores,
    patched_predictions,
    ridge_classify,
)
from iclab.analysis.phases import (
    CIRCUIT_CHANGE,
    CIRCUIT_METRICS,
    Phase,
    PhaseRow,
    PhaseRule,
    PhaseSummary,
    Transition,
    find_phases,
    find_transitions,
    jump_step,
    label_bag_accuracy,
    phase2_accuracy,
    phase_table,
    smoothed,
    steepest_gain,
    steepest_step,
    summarise_phases,
    with_rising,
)
from iclab.analysis.probes import circuit_probe, markov_probe
from iclab.analysis.readouts import (
    layer_r2,
    layer_readouts,
    layer_states,
    r2_score,
    readout_predictions,
    readout_r2,
    ridge_fit,
)
from iclab.analysis.weights import best_scale, relative_error_after_scale

__all__ = [
    "CIRCUIT_CHANGE", "CIRCUIT_METRICS", "Phase", "PhaseRow", "PhaseRule", "PhaseSummary",
    "Transition", "best_scale", "bigram", "chunk_example", "circuit_probe",
    "context_label_accuracy", "decodability", "decodability_probe", "error_cosine", "find_phases",
    "find_transitions", "icl_curve", "ila1", "implicit_weights", "induction_strength", "jump_step",
    "knn_classify", "label_attention", "label_bag_accuracy", "layer_r2", "layer_readouts",
    "layer_states", "markov_probe", "patch_scores", "patched_predictions", "phase2_accuracy",
    "phase_table", "prediction_cosine", "prediction_difference", "prefix_matching_score",
    "previous_token_score", "r2_score", "readout_predictions", "readout_r2",
    "relative_error_after_scale", "repeated_random_tokens", "ridge_classify", "ridge_fit",
    "sensitivities", "sensitivity_cosine", "sensitivity_difference", "shift_curve", "smoothed",
    "squared_prediction_difference", "steepest_gain", "steepest_step", "summarise_phases",
    "tila2", "tla2", "weight_distance", "with_rising",
]
