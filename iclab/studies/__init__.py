"""Studies: a recipe run at every point of a grid of its options, as one resumable sweep
folder, here or on a Ray cluster; its report (a phase diagram over two swept fields)."""

from iclab.studies.backends import LocalBackend, PointTask, RayBackend, make_backend
from iclab.studies.grid import Axis, Point, parse_axis, points
from iclab.studies.plots import phase_heatmap, sweep_curve
from iclab.studies.report import point_summary, write_sweep_report
from iclab.studies.sweep import Sweep, SweepSpec, load_sweep, make_spec, run_sweep, sweep

__all__ = ["Axis", "LocalBackend", "Point", "PointTask", "RayBackend", "Sweep", "SweepSpec",
           "load_sweep", "make_backend", "make_spec", "parse_axis", "phase_heatmap",
           "point_summary", "points", "run_sweep", "sweep", "sweep_curve",
           "write_sweep_report"]
