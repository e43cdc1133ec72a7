"""Config validation (errors name the field) and the to_dict / from_dict round trip."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

from iclab.config import ConfigError, from_dict, replace_unchecked, to_dict
from iclab.models import LSAConfig, RecurrentConfig, TransformerConfig
from iclab.tasks import LinearRegression
from iclab.train import TrainConfig

INVALID: list[tuple[type, dict[str, Any], str]] = [
    (LinearRegression, {"dim": 0}, "task.dim"),
    (LinearRegression, {"n_context": 0}, "task.n_context"),
    (LinearRegression, {"x_scale": 0.0}, "task.x_scale"),
    (LinearRegression, {"w_scale": -1.0}, "task.w_scale"),
    (LinearRegression, {"noise_std": -0.1}, "task.noise_std"),
    (LinearRegression, {"pool_size": 0}, "task.pool_size"),
    (LSAConfig, {"n_layers": 0}, "model.n_layers"),
    (LSAConfig, {"n_heads": 0}, "model.n_heads"),
    (LSAConfig, {"key_size": 0}, "model.key_size"),
    (LSAConfig, {"init_scale": 0.0}, "model.init_scale"),
    (TransformerConfig, {"d_model": 0}, "model.d_model"),
    (TransformerConfig, {"n_layers": 0}, "model.n_layers"),
    (TransformerConfig, {"n_heads": 0}, "model.n_heads"),
    (TransformerConfig, {"d_model": 10, "n_heads": 4}, "model.n_heads"),  # 4 ∤ 10
    (TransformerConfig, {"max_len": 0}, "model.max_len"),
    (TrainConfig, {"steps": 0}, "train.steps"),
    (TrainConfig, {"batch_size": 0}, "train.batch_size"),
    (TrainConfig, {"lr": 0.0}, "train.lr"),
    (TrainConfig, {"b1": 1.0}, "train.b1"),
    (TrainConfig, {"b2": -0.5}, "train.b2"),
    (TrainConfig, {"eps": 0.0}, "train.eps"),
    (TrainConfig, {"weight_decay": -1e-4}, "train.weight_decay"),
    (TrainConfig, {"warmup_steps": -1}, "train.warmup_steps"),
    (TrainConfig, {"grad_clip": 0.0}, "train.grad_clip"),
    (TrainConfig, {"eval_every": 0}, "train.eval_every"),
    (TrainConfig, {"eval_size": 0}, "train.eval_size"),
    (TrainConfig, {"eval_every": 30, "checkpoint_every": 100}, "train.checkpoint_every"),
    # Non-finite floats and integers past int32, in every config.
    (TrainConfig, {"lr": math.inf}, "train.lr"),
    (TrainConfig, {"lr": math.nan}, "train.lr"),
    (TrainConfig, {"grad_clip": math.inf}, "train.grad_clip"),
    (TrainConfig, {"steps": 2**31}, "train.steps"),
    (TrainConfig, {"batch_size": 2**40}, "train.batch_size"),
    (TrainConfig, {"divergence_factor": math.inf}, "train.divergence_factor"),
    (TrainConfig, {"divergence_factor": 1.0}, "train.divergence_factor"),
    (LinearRegression, {"noise_std": math.inf}, "task.noise_std"),
    (LinearRegression, {"x_scale": math.nan}, "task.x_scale"),
    (LinearRegression, {"pool_size": 2**31}, "task.pool_size"),
    (LSAConfig, {"init_scale": math.inf}, "model.init_scale"),
    (TransformerConfig, {"max_len": 2**31}, "model.max_len"),
    # Options that would have no effect.
    (TrainConfig, {"weight_decay": 0.01}, "train.weight_decay"),  # Adam
    (TrainConfig, {"optimizer": "sgd", "weight_decay": 0.01}, "train.weight_decay"),
    (TrainConfig, {"optimizer": "sgd", "b1": 0.5}, "train.b1"),
    (TrainConfig, {"optimizer": "sgd", "eps": 1e-6}, "train.eps"),
    (LinearRegression, {"pool_seed": 3}, "task.pool_seed"),  # no pool
    (LSAConfig, {"tied": True}, "model.tied"),  # one layer
]


@pytest.mark.parametrize(("cls", "kwargs", "field"), INVALID,
                         ids=[f"{field}={kw}" for _, kw, field in INVALID])
def test_invalid_values_name_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        cls(**kwargs)


# Literal-typed fields: under the test suite's runtime type checker a bad literal fails the
# type check before __post_init__ runs, so call the validation itself on a copy whose field
# was overwritten (this is what a user without the type checker hits).
INVALID_LITERALS: list[tuple[type, str, str]] = [
    (LinearRegression, "x_distribution", "task.x_distribution"),
    (LSAConfig, "attention", "model.attention"),
    (LSAConfig, "mask", "model.mask"),
    (TransformerConfig, "positional", "model.positional"),
    (TrainConfig, "optimizer", "train.optimizer"),
]


@pytest.mark.parametrize(("cls", "name", "field"), INVALID_LITERALS,
                         ids=[field for _, _, field in INVALID_LITERALS])
def test_invalid_literals_name_the_field(cls, name, field):
    config = cls()
    object.__setattr__(config, name, "bogus")
    with pytest.raises(ConfigError, match=rf"^{field}='bogus'"):
        config.__post_init__()


def test_valid_edge_values_are_accepted():
    LinearRegression(dim=1, n_context=1, noise_std=0.0, pool_size=1)
    LSAConfig(n_layers=1, key_size=1)
    TransformerConfig(d_model=6, n_heads=3, max_len=1)
    TrainConfig(b1=0.0, warmup_steps=0, eval_every=5, checkpoint_every=10)
    TrainConfig(steps=2**31 - 1, optimizer="adamw", weight_decay=0.1, divergence_factor=None)
    TrainConfig(optimizer="sgd", grad_clip=1.0)
    LinearRegression(pool_size=2**31 - 1, pool_seed=3)
    LSAConfig(n_layers=2, tied=True)


@dataclasses.dataclass(frozen=True)
class _Run:
    task: LinearRegression = dataclasses.field(default_factory=LinearRegression)
    model: LSAConfig = dataclasses.field(default_factory=LSAConfig)
    transformer: TransformerConfig | None = None
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    seeds: tuple[int, ...] = (0,)


def _example_run() -> _Run:
    return _Run(
        task=LinearRegression(dim=5, n_context=7, x_distribution="gaussian", noise_std=0.5,
                              pool_size=64, pool_seed=3),
        model=LSAConfig(n_layers=3, tied=True, key_size=4, init_scale=0.01),
        transformer=TransformerConfig(d_model=16, n_heads=4, positional="sinusoidal"),
        train=TrainConfig(steps=100, lr=3e-4, grad_clip=1.0, eval_every=10,
                          checkpoint_every=50, optimizer="adamw"),
        seeds=(1, 2, 3),
    )


def test_round_trip_nested_config():
    run = _example_run()
    data = to_dict(run)
    assert data["task"]["dim"] == 5 and data["train"]["grad_clip"] == 1.0
    assert from_dict(_Run, data) == run
    # Through JSON, as a run folder stores it (tuples come back as lists).
    assert from_dict(_Run, json.loads(json.dumps(data))) == run
    # Optional nested configs that are None stay None.
    plain = _Run()
    assert from_dict(_Run, json.loads(json.dumps(to_dict(plain)))) == plain
    # Leaf configs round-trip on their own too.
    for config in (run.task, run.model, run.transformer, run.train):
        assert from_dict(type(config), to_dict(config)) == config


def test_unknown_keys_name_the_key():
    data = to_dict(_example_run())
    with pytest.raises(ConfigError, match=r"config\.bogus"):
        from_dict(_Run, {**data, "bogus": 1})
    data["train"]["stepz"] = 3
    with pytest.raises(ConfigError, match=r"config\.train\.stepz"):
        from_dict(_Run, data)


def test_from_dict_validates_values():
    data = to_dict(_example_run())
    data["task"]["dim"] = 0
    with pytest.raises(ConfigError, match=r"task\.dim"):
        from_dict(_Run, data)


@pytest.mark.parametrize(("path", "value", "field"), [
    (("train", "lr"), "fast", r"config\.train\.lr='fast'.*float"),
    (("train", "steps"), 1.5, r"config\.train\.steps=1\.5.*int"),
    (("train", "steps"), True, r"config\.train\.steps=True.*int"),
    (("train", "optimizer"), "adagrad", r"config\.train\.optimizer='adagrad'.*'adam'"),
    (("train", "grad_clip"), [1.0], r"config\.train\.grad_clip=\[1\.0\]"),
    (("task",), [1, 2], r"config\.task=\[1, 2\].*LinearRegression"),
    (("seeds",), ["a"], r"config\.seeds\[0\]='a'.*int"),
    (("model", "tied"), "yes", r"config\.model\.tied='yes'.*bool"),
])
def test_from_dict_refuses_values_of_the_wrong_type(path, value, field):
    """A hand-edited config.json fails with the field's name, never a TypeError deep inside
    a config's own checks."""
    data = to_dict(_example_run())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ConfigError, match=field):
        from_dict(_Run, data)


def test_from_dict_refuses_a_non_object():
    with pytest.raises(ConfigError, match=r"^config=\[\] is invalid: must be a JSON object"):
        from_dict(_Run, [])


def test_replace_unchecked_skips_the_checks_but_not_the_field_names():
    """A sweep's traced stand-ins pass through a config no check could read."""
    config = TrainConfig(lr=1e-3)
    stand_in = object()
    replaced = replace_unchecked(config, lr=stand_in)
    assert replaced.lr is stand_in and replaced.steps == config.steps
    assert config.lr == 1e-3  # the original is untouched
    with pytest.raises(TypeError, match="no field 'rate'"):
        replace_unchecked(config, rate=0.1)


def test_flatten_keys_nested_fields_by_dotted_path_and_resume_names_what_differs():
    from iclab.config import flatten
    from iclab.runner import _differences

    stored = {"seed": 0, "train": {"lr": 0.1, "steps": 10}, "task": {"dim": 2}}
    assert flatten(stored) == {"seed": 0, "train.lr": 0.1, "train.steps": 10, "task.dim": 2}
    given = {"seed": 0, "train": {"lr": 0.2, "steps": 10}, "task": {"dim": 3}}
    assert _differences(stored, given) == ["train.lr (0.1 stored, 0.2 given)",
                                           "task.dim (2 stored, 3 given)"]


def test_a_union_of_configs_rebuilds_the_member_its_fields_name():
    """A field typed ``TransformerConfig | RecurrentConfig`` (a recipe's model) rebuilds
    whichever config ``to_dict`` wrote; fields of neither name the field."""
    from iclab.config import describe, value_from_json

    hint = TransformerConfig | RecurrentConfig
    for config in (RecurrentConfig(cell="gru", hidden_size=7), TransformerConfig(d_model=8)):
        assert value_from_json(json.loads(json.dumps(to_dict(config))), hint, "model") == config
    assert value_from_json({"cell": "gru"}, hint, "model") == RecurrentConfig(cell="gru")
    with pytest.raises(ConfigError, match=r"^model=\{'colour': 1\} is invalid: names fields "
                                          "of none of TransformerConfig, RecurrentConfig"):
        value_from_json({"colour": 1}, hint, "model")
    # A table cell names the type and what differs from its defaults.
    assert describe(RecurrentConfig(cell="gru", hidden_size=7)) == \
        "Recurrent(cell='gru', hidden_size=7)"
    assert describe(0.5) == 0.5


@pytest.mark.parametrize(("argv", "model"), [
    ([], TransformerConfig(d_model=64, n_layers=2, n_heads=4, max_len=30)),
    (["--model.d-model", "32"], TransformerConfig(d_model=32, n_layers=2, n_heads=4,
                                                  max_len=30)),
    (["model:recurrent-config", "--model.cell", "gru"], RecurrentConfig(cell="gru")),
    (["--model.hidden-size", "7", "model:recurrent"], RecurrentConfig(hidden_size=7)),
])
def test_a_choice_of_model_configs_takes_the_options_of_the_kind_picked(argv, model):
    """``model: TransformerConfig | RecurrentConfig`` on the command line: the default's
    options as plain options, ``model:KIND`` anywhere switching to that kind's defaults."""
    from iclab.cli import RunArgs
    from iclab.options import parse_options
    from iclab.recipes.bursty import BurstyConfig

    args = parse_options(RunArgs[BurstyConfig], argv, RunArgs(BurstyConfig()), prog="iclab",
                         description="")
    assert args.config.model == model
