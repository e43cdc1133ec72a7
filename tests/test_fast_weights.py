"""The recurrent memories: the selective SSM, the fast-weight memories and the Titans memory.

Each reduces to its closed form with fixed weights: the SSM's associative scan is its
sequential scan; the Hebbian memory read with k = x, v = y is one GD step from zero (von
Oswald et al. 2022); the delta rule is online LMS; gated DeltaNet with α = 1 is DeltaNet;
Titans with a linear memory, no momentum and no forgetting is the delta rule. Then, for
every model: causality, the row-restricted pass, finite gradients, bad configs, sizes, and a
save/load round trip."""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclab.config import ConfigError
from iclab.learners import ComputesRows
from iclab.models import (
    FastWeightConfig,
    FastWeightMemory,
    MambaConfig,
    NeuralMemory,
    TitansConfig,
    activation_floats,
    carried_floats,
    clamp,
    linear_recurrence,
    model_size,
    parameter_count,
    run_with_hooks,
    selective_scan,
    state_size,
)
from iclab.train.saved_model import load_trained_model, save_trained_model

D_IN, D_OUT, SEQ = 3, 2, 6  # shared shapes share compiled initialisers

CONFIGS = {
    "mamba": MambaConfig(d_model=8, n_layers=1, d_state=4, d_conv=2),
    "hebbian": FastWeightConfig(rule="hebbian", d_model=8, n_layers=1, conv=2),
    "delta": FastWeightConfig(rule="delta", d_model=8, n_layers=1, conv=2, mlp=False),
    "gated-delta": FastWeightConfig(rule="gated_delta", d_model=8, n_layers=1, conv=2,
                                    mlp=False),
    "titans-mlp": TitansConfig(d_model=8, n_layers=1, conv=2, mlp=False),
    "titans-linear-mal": TitansConfig(d_model=8, n_layers=1, memory="linear", window=2,
                                      conv=0),
}
# A training step compiles the backward pass too, the slowest compilation here: one model
# of each family takes it (gated DeltaNet's and Titans' MLP memory contain the others' code
# paths but attention's, tested with the transformer); the rest run forward only, and their
# row-restricted pass.
TRAINED = ("mamba", "gated-delta", "titans-mlp")


# Compiling is most of this module's time and nothing here runs long enough to repay XLA's
# optimisation passes.
pytestmark = pytest.mark.usefixtures("quick_compiles")


def _key() -> jax.Array:
    """One "rbg" key for every model: its initialisers compile in a fraction of the time
    threefry's take, and any key exercises the same code. One key also gives models that
    differ only in their rule (or scan) the same shared weights."""
    return jax.random.key(0, impl="rbg")


@functools.cache
def _build(config) -> eqx.Module:
    """``config``'s model on (SEQ, D_IN) tokens, built once per session."""
    return config.build(D_IN, D_OUT, key=_key())


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@eqx.filter_jit
def _forward(model, pair):
    """Outputs on each of a pair of sequences; the first's read-out at rows 2:5."""
    return jax.vmap(model)(pair), model.outputs_at(pair[0], slice(2, 5))


@eqx.filter_jit
def _training_step(model, pair):
    """Outputs on each of a pair of sequences, and the gradient of a loss on them."""
    def loss(m):
        outputs = jax.vmap(m)(pair)
        return jnp.mean(outputs[0] ** 2), outputs

    (_, outputs), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model)
    return outputs, grads


@pytest.mark.parametrize("name", list(CONFIGS))
def test_causal_with_finite_gradients(name):
    """One output per token; changing token t + 1 leaves every output up to t unchanged and
    changes output t + 1. One model of each family: a loss's gradient is finite everywhere
    and non-zero somewhere in every mixer; the others: the row-restricted pass that training
    uses equals the full forward pass. No parameter is weakly typed (a reloaded or updated
    one would not be, and would compile the model again)."""
    model = _build(CONFIGS[name])
    params = jax.tree.leaves(eqx.filter(model, eqx.is_array))
    assert not any(leaf.weak_type for leaf in params)
    tokens = _normal(0, (SEQ, D_IN))
    t = 3
    pair = jnp.stack([tokens, tokens.at[t + 1].add(1.0)])
    if name in TRAINED:
        (out, changed), grads = _training_step(model, pair)
        leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_array))
        assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
        for block in grads.blocks:
            mixer = jax.tree.leaves(eqx.filter(block[0].layer, eqx.is_array))
            assert max(np.abs(leaf).max() for leaf in mixer) > 0
    else:
        (out, changed), rows = _forward(model, pair)
        np.testing.assert_allclose(rows, np.asarray(out)[2:5], rtol=1e-6, atol=1e-6)
        assert isinstance(model, ComputesRows)
    assert out.shape == (SEQ, D_OUT)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(np.asarray(changed)[:t + 1], np.asarray(out)[:t + 1])
    assert np.abs(np.asarray(changed)[t + 1] - np.asarray(out)[t + 1]).max() > 1e-5


# ----------------------------------------------------------------------------------------
# Selective SSM: the associative scan is the sequential scan.


@eqx.filter_jit
def _both_scans(decay, drive, associative, sequential, tokens):
    hooked, _ = run_with_hooks(sequential, tokens, capture=("blocks.0.ssm.state",))
    return (linear_recurrence(decay, drive, scan="associative"),
            linear_recurrence(decay, drive, scan="sequential"),
            associative(tokens), sequential(tokens), hooked)


def test_associative_scan_equals_sequential_scan():
    """``h_t = a_t ⊙ h_{t−1} + b_t`` by ``lax.associative_scan`` equals ``lax.scan`` to 1e-5,
    on its own (33 steps, not a power of two) and inside the Mamba model, where the
    sequential scan runs fused without hooks and stores its states with them."""
    rng = np.random.default_rng(1)
    decay = jnp.asarray(rng.uniform(0.5, 1.0, size=(33, 4, 3)), jnp.float32)
    drive = _normal(2, (33, 4, 3))
    config = CONFIGS["mamba"]
    assert config.scan == "sequential"
    associative = _build(dataclasses.replace(config, scan="associative"))
    sequential = _build(config)
    h_assoc, h_seq, out_assoc, out_seq, out_hooked = _both_scans(
        decay, drive, associative, sequential, _normal(3, (SEQ, D_IN)))
    np.testing.assert_allclose(h_assoc, h_seq, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_assoc, out_seq, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_hooked, out_seq, rtol=1e-5, atol=1e-5)
    # The sequential scan is the recurrence itself.
    h = np.zeros((4, 3))
    for a, b in zip(np.asarray(decay), np.asarray(drive), strict=True):
        h = a * h + b
    np.testing.assert_allclose(h_seq[-1], h, rtol=1e-5, atol=1e-5)


def test_selective_scan_is_the_recurrence_read_at_every_step():
    """The fused scan's reads ``C_t · h_t``, ``h_t = exp(Δ_t A) ⊙ h_{t−1} + Δ_t u_t B_t``,
    against a NumPy loop over the tokens in float64."""
    rng = np.random.default_rng(4)
    seq, d, n = 9, 3, 2
    dt, u = rng.uniform(0.1, 1.0, size=(seq, d)), rng.normal(size=(seq, d))
    a, b, c = -rng.uniform(0.5, 2.0, size=(d, n)), rng.normal(size=(seq, n)), rng.normal(
        size=(seq, n))
    with jax.enable_x64(True):
        reads = selective_scan(*(jnp.asarray(v, jnp.float64) for v in (dt, a, u, b, c)))
    h, expected = np.zeros((d, n)), []
    for t in range(seq):
        h = np.exp(dt[t][:, None] * a) * h + (dt[t] * u[t])[:, None] * b[t][None, :]
        expected.append(h @ c[t])
    np.testing.assert_allclose(reads, np.array(expected), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------
# Fast weights and Titans with fixed weights: their closed forms, in float64.

DIM, STEPS = 3, 7  # tokens z_t = [x_t, y_t, q_t]: input, target, where to read
WIDTH = 2 * DIM + 1


def _regression(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs x_t, noisy linear targets y_t and read points q_t."""
    rng = np.random.default_rng(seed)
    x, q = rng.normal(size=(STEPS, DIM)), rng.normal(size=(STEPS, DIM))
    return x, x @ rng.normal(size=DIM) + 0.1 * rng.normal(size=STEPS), q


def _constant(memory: eqx.Module, gate: str, rate: float) -> eqx.Module:
    """``memory`` with the rate gate ``gate`` (β, θ, η, α) constant at ``rate``."""
    linear = getattr(memory, gate)
    return eqx.tree_at(lambda m: (getattr(m, gate).weight, getattr(m, gate).bias), memory,
                       (jnp.zeros_like(linear.weight),
                        jnp.full(linear.bias.shape, np.log(rate / (1 - rate)))))


def _select(memory: eqx.Module) -> eqx.Module:
    """One head with k_t = x_t, v_t = y_t, q_t = the read point, written to output 0."""
    eye = jnp.eye(WIDTH)
    weights = {"key": eye[:DIM], "value": eye[DIM:DIM + 1], "query": eye[DIM + 1:]}
    return eqx.tree_at(
        lambda m: (*(getattr(m.features, name).weight for name in weights), m.output.weight),
        memory, (*weights.values(), eye[:, :1]))


def _float64(memory: eqx.Module) -> eqx.Module:
    """``memory``'s weights in float64 (built in float32: the initialisers compiled for
    float32 serve; call inside ``jax.enable_x64``)."""
    return jax.tree.map(lambda leaf: leaf.astype(jnp.float64) if eqx.is_array(leaf) else leaf,
                        memory)


def _read(memory: eqx.Module, x, y, q) -> np.ndarray:
    tokens = jnp.asarray(np.concatenate([x, y[:, None], q], axis=1))
    return np.asarray(eqx.filter_jit(lambda m, z: m(z))(memory, tokens))[:, 0]


def _plain(**fields) -> dict:
    """One layer, one head reading the token slots as they are."""
    return dict(d_model=WIDTH, n_layers=1, n_heads=1, key_size=DIM, value_size=1, conv=0,
                activation="identity", normalize=False, **fields)


def test_hebbian_memory_is_one_gd_step_from_zero():
    """von Oswald et al. (2022): W_t = Σ_{i≤t} y_i x_iᵀ is −∇ of ½Σ_{i≤t}(w·x_i − y_i)² at
    w = 0, so the read W_t q_t is the prediction at q_t after one GD step of size 1."""
    x, y, q = _regression(0)
    memory = FastWeightMemory(FastWeightConfig(rule="hebbian", **_plain()), key=_key())
    with jax.enable_x64(True):
        reads = _read(_select(_float64(memory)), x, y, q)
    gd_weights = np.cumsum(y[:, None] * x, axis=0)  # w after one step on the first t pairs
    np.testing.assert_allclose(reads, np.sum(gd_weights * q, axis=1), rtol=1e-12, atol=1e-12)


def _online_lms(x, y, q, rate: float) -> np.ndarray:
    """Widrow–Hoff: w ← w + rate (y_t − w·x_t) x_t from w = 0; the prediction at q_t."""
    w, predictions = np.zeros(DIM), []
    for x_t, y_t, q_t in zip(x, y, q, strict=True):
        w = w + rate * (y_t - w @ x_t) * x_t
        predictions.append(w @ q_t)
    return np.array(predictions)


@pytest.mark.parametrize("kind", ["delta", "titans"])
def test_delta_rule_and_plain_titans_are_online_lms(kind):
    """DeltaNet with β_t = β is online LMS with rate β; so is Titans with a linear memory,
    no momentum (η = 0), no forgetting (α = 0) and θ_t = β: the gradient of ½‖W k − v‖² is
    (W k − v) kᵀ (Titans eq. 34)."""
    x, y, q = _regression(1)
    beta = 0.3
    if kind == "delta":
        memory = FastWeightMemory(FastWeightConfig(rule="delta", **_plain()), key=_key())
    else:
        config = TitansConfig(memory="linear", momentum=False, forget=False, **_plain())
        memory = NeuralMemory(config, key=_key())
    with jax.enable_x64(True):
        memory = _constant(_select(_float64(memory)), "beta" if kind == "delta" else "theta",
                           beta)
        reads = _read(memory, x, y, q)
    np.testing.assert_allclose(reads, _online_lms(x, y, q, beta), rtol=1e-12, atol=1e-12)


def test_titans_linear_memory_follows_its_update_equations():
    """With constant rates, the linear memory is GD with momentum and weight decay (eqs.
    13–14): S_t = η S_{t−1} − θ (M_{t−1} x_t − y_t) x_tᵀ, M_t = (1 − α) M_{t−1} + S_t; and
    ``memory.loss`` is ½(M_{t−1} x_t − y_t)²."""
    x, y, q = _regression(2)
    theta, eta, alpha = 0.3, 0.6, 0.1
    memory = NeuralMemory(TitansConfig(memory="linear", **_plain()), key=_key())
    with jax.enable_x64(True):
        memory = _select(_float64(memory))
        for gate, rate in (("theta", theta), ("eta", eta), ("alpha", alpha)):
            memory = _constant(memory, gate, rate)
        tokens = jnp.asarray(np.concatenate([x, y[:, None], q], axis=1))
        out, captured = eqx.filter_jit(lambda m, z: run_with_hooks(
            m, z, capture=["memory.loss"]))(memory, tokens)
    m, s, reads, losses = np.zeros(DIM), np.zeros(DIM), [], []
    for x_t, y_t, q_t in zip(x, y, q, strict=True):
        losses.append(0.5 * (m @ x_t - y_t) ** 2)
        s = eta * s - theta * (m @ x_t - y_t) * x_t
        m = (1 - alpha) * m + s
        reads.append(m @ q_t)
    np.testing.assert_allclose(np.asarray(out)[:, 0], reads, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(captured["memory.loss"][0], losses, rtol=1e-12, atol=1e-12)


def test_titans_mlp_memory_learns_a_repeated_association():
    """The MLP memory trains at test time: fed one token again and again (no momentum, no
    forgetting, θ = 0.1), each write lowers the associative loss of the next, in every
    head."""
    config = TitansConfig(d_model=8, n_layers=1, momentum=False, forget=False, conv=0)
    memory = _constant(NeuralMemory(config, key=_key()), "theta", 0.1)
    tokens = jnp.tile(_normal(6, (1, 8)), (SEQ, 1))
    _, captured = eqx.filter_jit(lambda m, z: run_with_hooks(
        m, z, capture=["memory.loss"]))(memory, tokens)
    losses = np.asarray(captured["memory.loss"])  # (heads, seq)
    assert np.all(np.diff(losses, axis=1) < 0), losses


@eqx.filter_jit
def _gated_with_alpha_one(gated, delta, tokens):
    ones = dict([clamp("blocks.0.memory.alpha", jnp.ones(()))])
    clamped, captured = run_with_hooks(gated, tokens, capture=["blocks.0.memory.alpha"],
                                       interventions=ones)
    return clamped, captured, gated(tokens), delta(tokens)


def test_gated_delta_with_alpha_one_is_deltanet():
    """Clamping gated DeltaNet's decay α_t to 1 (an intervention at ``memory.alpha``, which
    feeds the recurrence) gives DeltaNet with the same weights; unclamped it differs."""
    gated, delta = _build(CONFIGS["gated-delta"]), _build(CONFIGS["delta"])
    tokens = _normal(4, (SEQ, D_IN))
    clamped, captured, free, reference = _gated_with_alpha_one(gated, delta, tokens)
    np.testing.assert_array_equal(captured["blocks.0.memory.alpha"], 1.0)
    np.testing.assert_allclose(clamped, reference, rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(free) - np.asarray(reference)).max() > 1e-4


# ----------------------------------------------------------------------------------------
# Configs, sizes, saving.


@pytest.mark.parametrize(("cls", "name", "value"), [
    (MambaConfig, "d_model", 0), (MambaConfig, "d_state", 0), (MambaConfig, "d_conv", 0),
    (MambaConfig, "expand", 0), (MambaConfig, "dt_rank", 0), (MambaConfig, "n_layers", -1),
    (FastWeightConfig, "n_heads", 0), (FastWeightConfig, "n_heads", 3),
    (FastWeightConfig, "key_size", 0), (FastWeightConfig, "value_size", -2),
    (FastWeightConfig, "conv", -1), (TitansConfig, "memory_hidden", 0),
    (TitansConfig, "window", -1), (TitansConfig, "n_layers", 0), (TitansConfig, "conv", -1),
])
def test_bad_sizes_name_the_field(cls, name, value):
    with pytest.raises(ConfigError, match=rf"^model\.{name}={value}"):
        cls(**{name: value})


@pytest.mark.parametrize(("cls", "name", "value"), [
    (MambaConfig, "scan", "parallel"), (MambaConfig, "head", "conv"),
    (FastWeightConfig, "rule", "lstm"), (FastWeightConfig, "activation", "relu"),
    (TitansConfig, "memory", "deep"),
])
def test_bad_literals_name_the_field(cls, name, value):
    """A bad literal fails the test suite's runtime type check before ``__post_init__``, so
    validation runs on a copy whose field was overwritten (what a user without it hits)."""
    config = cls()
    object.__setattr__(config, name, value)
    with pytest.raises(ConfigError, match=rf"^model\.{name}={value!r}"):
        config.__post_init__()


def test_a_convolution_wider_than_the_sequence_names_the_field():
    MambaConfig(d_conv=4).require_fits(D_IN, 4)
    with pytest.raises(ConfigError, match=r"^model\.d_conv=4 .*sequence length 3"):
        MambaConfig(d_conv=4).require_fits(D_IN, 3)
    for config in (FastWeightConfig(conv=5), TitansConfig(conv=5)):
        with pytest.raises(ConfigError, match=r"^gpicl\.model\.conv=5"):
            config.require_fits(D_IN, 4, prefix="gpicl.model")


def _abstract(config, d_in=D_IN, d_out=D_OUT):
    return eqx.filter_eval_shape(config.build, d_in, d_out, key=jax.random.key(0))


def test_state_sizes_and_parameters_by_hand():
    """State: the SSM's d_inner × d_state per layer, the fast weights' key × value per head
    and layer, Titans' memory parameters per head and layer (plus its window's keys), all
    independent of the sequence length; carried floats add convolution buffers, Titans'
    momentum and its window's values. Parameters of a Mamba block: 3 E d² in the projections
    (Gu & Dao 2023, §3.4), plus the convolution, x_proj, dt_proj, A and D."""
    mamba = MambaConfig(d_model=16, n_layers=2, d_state=8, d_conv=4)  # d_inner 32, R = 1
    assert state_size(mamba, 10) == state_size(mamba, 1000) == 2 * 32 * 8
    assert carried_floats(mamba, 10) == 2 * 32 * 8 + 2 * 3 * 32
    block = (16 * 64 + 32 * 16) + 32 * 5 + 32 * (1 + 16) + (32 + 32) + 32 * 8 + 32 + 2 * 16
    assert parameter_count(_abstract(mamba, 3, 1)) == (3 * 16 + 16) + 2 * block + 32 + 17

    fast = FastWeightConfig(d_model=16, n_layers=3, n_heads=4, value_size=2, conv=3)
    assert state_size(fast, 10) == 3 * 4 * 4 * 2
    assert carried_floats(fast, 10) == 96 + 3 * 2 * 4 * (4 + 4 + 2)

    titans = TitansConfig(d_model=16, n_layers=2, n_heads=2, memory_hidden=5, conv=0)
    assert titans.memory_size == 5 * (8 + 8)
    assert state_size(titans, 10) == 2 * 2 * 80
    assert carried_floats(titans, 10) == 2 * 2 * 80 * 2  # and the momentum S
    plain = TitansConfig(d_model=16, n_heads=2, memory="linear", momentum=False, window=4,
                         conv=2)
    assert state_size(plain, 3) == 2 * (2 * 64 + 16 * 3)  # a window longer than the sequence
    assert carried_floats(plain, 10) == 2 * (2 * 64 + 2 * 16 * 4) + 2 * 2 * (8 + 8 + 8)

    for config in (mamba, fast, titans, plain):
        entry = model_size(config, _abstract(config), 10)
        assert entry["state_size"] == state_size(config, 10)
        assert entry["parameters"] == parameter_count(_abstract(config))
        assert activation_floats(config, 20, 3) > activation_floats(config, 10, 3) > 0
    assert [model_size(c, _abstract(c), 10)["kind"] for c in (mamba, fast, titans)] == [
        "Mamba", "FastWeight", "Titans"]


def test_a_trained_deltanet_saves_and_reloads(tmp_path):
    """Through :mod:`iclab.train.saved_model`: the config comes back equal, the weights of
    every seed bit for bit."""
    config = CONFIGS["delta"]
    models = [_build(config), config.build(D_IN, D_OUT, key=jax.random.key(1, impl="rbg"))]
    params = jax.tree.map(lambda *leaves: np.stack(leaves),
                          *(eqx.filter(model, eqx.is_array) for model in models))
    save_trained_model(tmp_path, config, params, d_in=D_IN, d_out=D_OUT, seeds=[5, 6],
                       about={"task": "none"})
    trained = load_trained_model(tmp_path)
    assert trained.config == config and trained.seeds == [5, 6]
    pair = _normal(5, (2, SEQ, D_IN))
    for saved, loaded in zip(models, trained.models, strict=True):
        np.testing.assert_array_equal(_forward(loaded, pair)[0], _forward(saved, pair)[0])
