"""iclab: meta-train sequence models on task distributions and measure how they learn in
context, side by side with the classical algorithms they may imitate.

The top level re-exports the Python API of the command line and :class:`ICLClassifier`
(a meta-trained learner as a scikit-learn-style classifier); the parts live in
:mod:`iclab.tasks`, :mod:`iclab.formats`, :mod:`iclab.models`, :mod:`iclab.learners`,
:mod:`iclab.algorithms`, :mod:`iclab.train`, :mod:`iclab.analysis` and
:mod:`iclab.recipes` (layers: docs/architecture.md).
"""

# The recipes load first: some (chan) run sweeps, and the sweep layer imports the runner.
from iclab import recipes  # noqa: F401  (registers every recipe)
from iclab.classifier import ICLClassifier
from iclab.comparison import Comparison, compare
from iclab.runner import default_config, render, run
from iclab.runs import Run, load_run
from iclab.studies import Sweep, load_sweep, sweep, write_sweep_report

__all__ = ["Comparison", "ICLClassifier", "Run", "Sweep", "compare", "default_config",
           "load_run", "load_sweep", "render", "run", "sweep", "write_sweep_report"]
__version__ = "0.1.0"
