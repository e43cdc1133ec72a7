"""Recipes: one module per published result, registered by name."""

from iclab.recipes import minegishi, reddy, von_oswald
from iclab.recipes.registry import RECIPES, Recipe, get_recipe

__all__ = ["RECIPES", "Recipe", "get_recipe", "minegishi", "reddy", "von_oswald"]
