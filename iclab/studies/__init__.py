"""Studies: a recipe run at every point of a grid of its options, as one resumable sweep
folder, here or on a Ray cluster."""

from iclab.studies.backends import LocalBackend, RayBackend, make_backend
from iclab.studies.grid import Axis, Point, parse_axis, points
from iclab.studies.groups import PointGroup, PointTask, group_fits, plan_groups
from iclab.studies.sweep import Sweep, SweepSpec, load_sweep, make_spec, run_sweep, sweep

__all__ = ["Axis", "LocalBackend", "Point", "PointGroup", "PointTask", "RayBackend", "Sweep",
           "SweepSpec", "group_fits", "load_sweep", "make_backend", "make_spec", "parse_axis",
           "plan_groups", "points", "run_sweep", "sweep"]
