"""Sweep grids: axis syntax, typed values, points, and errors that name the field."""

from __future__ import annotations

import pytest

from iclab.errors import ConfigError
from iclab.recipes.von_oswald import VonOswaldConfig
from iclab.studies.grid import parse_axis, points


@pytest.mark.parametrize(("text", "field", "values"), [
    ("train.lr=1e-3,1e-2", "train.lr", (1e-3, 1e-2)),
    ("task.n-context=2**1..2**4", "task.n_context", (2, 4, 8, 16)),
    ("task.n_context=3..6", "task.n_context", (3, 4, 5, 6)),
    ("train.lr=0.5..2.5:5", "train.lr", (0.5, 1.0, 1.5, 2.0, 2.5)),
    ("train.lr=1e-4..1e-2:3log", "train.lr", (1e-4, 1e-3, 1e-2)),
    ("model.attention=linear,softmax", "model.attention", ("linear", "softmax")),
    ("train.grad_clip=none,1", "train.grad_clip", (None, 1.0)),
])
def test_axis_syntax(text, field, values):
    axis = parse_axis(text, VonOswaldConfig)
    assert axis.field == field
    assert axis.values == pytest.approx(values) if None not in values else axis.values == values
    assert [type(v) for v in axis.values] == [type(v) for v in values]


@pytest.mark.parametrize(("text", "message"), [
    ("train.lr", "expected FIELD=VALUES"),
    ("train.lr=", "no values"),
    ("train.nope=1", "unknown field 'nope'"),
    ("train=1", "a group of options"),
    ("train.lr=fast", "not a valid float"),
    ("train.lr=inf", "not a valid float"),
    ("train.steps=1.5", "not a valid int"),
    ("model.attention=cubic", "one of linear, softmax"),
    ("task.n_context=8..2", "start must be below"),
    ("train.lr=0..1e-2:3log", "ends > 0"),
    ("train.lr=1,1", "repeated"),
])
def test_bad_axes_name_the_field(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_axis(text, VonOswaldConfig)


def test_points_are_the_product_with_zipped_fields_as_one_axis():
    lr = parse_axis("train.lr=1e-3,1e-2", VonOswaldConfig)
    context = parse_axis("task.n_context=5,10", VonOswaldConfig)
    dim = parse_axis("task.dim=4,8", VonOswaldConfig)
    grid = points(VonOswaldConfig(), [lr], [context, dim])
    assert [p.values for p in grid] == [
        {"train.lr": 1e-3, "task.n_context": 5, "task.dim": 4},
        {"train.lr": 1e-3, "task.n_context": 10, "task.dim": 8},
        {"train.lr": 1e-2, "task.n_context": 5, "task.dim": 4},
        {"train.lr": 1e-2, "task.n_context": 10, "task.dim": 8}]
    assert grid[3].config.train.lr == 1e-2 and grid[3].config.task.dim == 8
    assert grid[3].config.train.steps == VonOswaldConfig().train.steps
    assert [p.name for p in grid] == ["point-000", "point-001", "point-002", "point-003"]


def test_a_point_the_config_refuses_names_the_point():
    with pytest.raises(ConfigError, match=r"point 1 \(train.lr=-1.0\): train.lr=-1.0"):
        points(VonOswaldConfig(), [parse_axis("train.lr=1,-1", VonOswaldConfig)])


def test_grid_errors():
    lr = parse_axis("train.lr=1e-3,1e-2", VonOswaldConfig)
    with pytest.raises(ConfigError, match="swept twice"):
        points(VonOswaldConfig(), [lr, lr])
    with pytest.raises(ConfigError, match="same number of values"):
        points(VonOswaldConfig(), [], [lr, parse_axis("task.dim=1,2,3", VonOswaldConfig)])


def test_a_spec_sweeping_whole_model_configs_round_trips_through_its_json(tmp_path):
    """The Python API sweeps a group of options (a model config of either kind); sweep.json
    stores each value as its fields and reads back the same configs."""
    import json

    from iclab.models import RecurrentConfig, TransformerConfig
    from iclab.recipes.bursty import BurstyConfig
    from iclab.studies.grid import Axis
    from iclab.studies.sweep import SweepSpec

    models = (TransformerConfig(d_model=64, n_heads=4, max_len=30),
              RecurrentConfig(cell="gru", hidden_size=5))
    spec = SweepSpec("bursty", BurstyConfig(), (Axis("model", models),))
    again = SweepSpec.from_json(json.loads(json.dumps(spec.to_json())), where="sweep.json")
    assert again == spec
    assert [point.config.model for point in again.points()] == list(models)
