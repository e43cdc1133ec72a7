"""Studies: a recipe run at every point of a grid of its options, as one resumable sweep
folder, here or on a Ray cluster; its report (a phase diagram over two swept fields)."""

from iclab.studies.backends import LocalBackend, RayBackend, make_backend
from iclab.studies.grid import Axis, Point, parse_axis, points
from iclab.studies.groups import PointGroup, PointTask, group_fits, plan_groups
from iclab.studies.plots import phase_heatmap, sweep_curve
from iclab.studies.report import point_summary, write_sweep_report
from iclab.studies.sweep import Sweep, SweepSpec, load_sweep, make_spec, run_sweep, sweep

__all__ = ["Axis", "LocalBackend", "Point", "PointGroup", "PointTask", "RayBackend", "Sweep",
           "SweepSpec", "group_fits", "load_sweep", "make_backend", "make_spec", "parse_axis",
           "phase_heatmap", "plan_groups", "point_summary", "points", "run_sweep", "sweep",
           "sweep_curve", "write_sweep_report"]
