"""Studies: a recipe run at every point of a grid of its options, as one resumable sweep
folder, here or on a Ray cluster."""

from iclab.studies.backends import LocalBackend, PointTask, RayBackend, make_backend
from iclab.studies.grid import Axis, Point, parse_axis, points
from iclab.studies.sweep import Sweep, SweepSpec, load_sweep, make_spec, run_sweep, sweep

__all__ = ["Axis", "LocalBackend", "Point", "PointTask", "RayBackend", "Sweep", "SweepSpec",
           "load_sweep", "make_backend", "make_spec", "parse_axis", "points", "run_sweep",
           "sweep"]
