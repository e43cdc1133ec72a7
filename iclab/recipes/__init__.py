"""Recipes: one module per published result, registered by name."""

from iclab.recipes import chan, kirsch, minegishi, reddy, rnn_vs_transformer, von_oswald
from iclab.recipes.registry import RECIPES, Recipe, get_recipe

__all__ = ["RECIPES", "Recipe", "chan", "get_recipe", "kirsch", "minegishi", "reddy",
           "rnn_vs_transformer", "von_oswald"]
