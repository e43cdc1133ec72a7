"""Sequence models (Equinox modules) sharing one forward signature with named hook sites."""

from iclab.models.attention import MultiHeadAttention, attention_mask
from iclab.models.base import ModelConfig
from iclab.models.cache import ActivationCache, run_with_cache
from iclab.models.hooks import Hooks, Intervention, ablate_head, clamp, run_with_hooks
from iclab.models.label_embedding import LearnedLabels
from iclab.models.lsa import LinearSelfAttention, LSAConfig, gd_construction
from iclab.models.recurrent import RecurrentConfig, RecurrentModel
from iclab.models.size import (
    activation_floats,
    carried_floats,
    model_size,
    parameter_count,
    state_size,
)
from iclab.models.transformer import Transformer, TransformerConfig

__all__ = [
    "ActivationCache", "Hooks", "Intervention", "LSAConfig", "LearnedLabels",
    "LinearSelfAttention", "ModelConfig", "MultiHeadAttention", "RecurrentConfig",
    "RecurrentModel", "Transformer", "TransformerConfig", "ablate_head", "activation_floats",
    "attention_mask", "carried_floats", "clamp", "gd_construction", "model_size",
    "parameter_count", "run_with_cache", "run_with_hooks", "state_size",
]
