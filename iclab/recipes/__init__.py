"""Recipes: one module per published result, registered by name."""

from iclab.recipes import (
    akyurek,
    architectures,
    bursty,
    chan,
    edelman,
    fast_weights,
    fu,
    garg,
    gpicl_pool,
    han,
    hochreiter,
    kirsch,
    minegishi,
    raventos,
    raventos_pool,
    reddy,
    rnn_vs_transformer,
    von_oswald,
)
from iclab.recipes.registry import RECIPES, Recipe, get_recipe

__all__ = ["RECIPES", "Recipe", "akyurek", "architectures", "bursty", "chan", "edelman",
           "fast_weights", "fu", "garg", "get_recipe", "gpicl_pool", "han", "hochreiter",
           "kirsch", "minegishi",
           "raventos", "raventos_pool", "reddy", "rnn_vs_transformer", "von_oswald"]
