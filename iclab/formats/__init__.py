"""Prompt formats: how a model reads an episode and how its outputs become predictions."""

from iclab.formats.regression import Format, InterleavedTokens, PairTokens, format_named

__all__ = ["Format", "InterleavedTokens", "PairTokens", "format_named"]
