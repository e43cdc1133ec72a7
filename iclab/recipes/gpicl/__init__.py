"""What the general-purpose in-context learning recipes (``kirsch``,
``rnn-vs-transformer``) share (Kirsch et al. 2022).

:mod:`~iclab.recipes.gpicl.setup`: the warm-up curriculum and training one sequence model
on GPICL sequences into a model folder; :mod:`~iclab.recipes.gpicl.evaluation`: accuracy
at every position of the fixed evaluation sets, and the classical learners it is compared
with.
"""
