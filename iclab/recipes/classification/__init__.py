"""What the in-context classification recipes (``reddy``, ``minegishi``) share.

:mod:`~iclab.recipes.classification.setup`: the papers' model and training, the layer-1
clamps, the cross-field checks and training with the circuit probe;
:mod:`~iclab.recipes.classification.figures`: accuracy, circuits and attention maps over
training. The phase table itself is analysis (:mod:`iclab.analysis.phases`).
"""
