"""Sequence models (Equinox modules) sharing one forward signature with named hook sites."""

from iclab.models.attention import MultiHeadAttention, attention_mask
from iclab.models.base import ModelConfig
from iclab.models.cache import ActivationCache, run_with_cache
from iclab.models.fast_weights import FastWeightConfig, FastWeightMemory, fast_weight_scan
from iclab.models.hooks import Hooks, Intervention, ablate_head, clamp, run_with_hooks
from iclab.models.label_embedding import LearnedLabels
from iclab.models.lsa import LinearSelfAttention, LSAConfig, gd_construction
from iclab.models.recurrent import RecurrentConfig, RecurrentModel
from iclab.models.size import (
    activation_floats,
    carried_floats,
    config_parameters,
    model_size,
    parameter_count,
    state_size,
    width_for_parameters,
)
from iclab.models.ssm import MambaConfig, SelectiveSSM, linear_recurrence, selective_scan
from iclab.models.stack import SequenceStack
from iclab.models.titans import NeuralMemory, TitansConfig, memory_scan
from iclab.models.transformer import Transformer, TransformerConfig

__all__ = [
    "ActivationCache", "FastWeightConfig", "FastWeightMemory", "Hooks", "Intervention",
    "LSAConfig", "LearnedLabels", "LinearSelfAttention", "MambaConfig", "ModelConfig",
    "MultiHeadAttention", "NeuralMemory", "RecurrentConfig", "RecurrentModel", "SelectiveSSM",
    "SequenceStack", "TitansConfig", "Transformer", "TransformerConfig", "ablate_head",
    "activation_floats", "attention_mask", "carried_floats", "clamp", "config_parameters",
    "fast_weight_scan", "gd_construction", "linear_recurrence", "memory_scan", "model_size",
    "parameter_count", "run_with_cache", "run_with_hooks", "selective_scan", "state_size",
    "width_for_parameters",
]
