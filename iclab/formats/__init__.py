"""Prompt formats: how a model reads an episode, how its outputs become predictions, and
how those predictions are scored."""

from iclab.formats.base import Format
from iclab.formats.classification import ItemLabelTokens
from iclab.formats.gpicl import SequenceLabelTokens, accuracy_by_position
from iclab.formats.markov import StateTokens
from iclab.formats.recall import RecallTokens, RecallVectors
from iclab.formats.regression import (
    InterleavedTokens,
    PairTokens,
    PreviousPairTokens,
    PreviousTargetTokens,
    RegressionFormat,
)

__all__ = ["Format", "InterleavedTokens", "ItemLabelTokens", "PairTokens", "PreviousPairTokens",
           "PreviousTargetTokens", "RecallTokens", "RecallVectors", "RegressionFormat",
           "SequenceLabelTokens", "StateTokens", "accuracy_by_position"]
