"""Architecture updates: each mode moves the right parameters on the right data.

A quadratic loss with plain SGD makes every update computable by hand:
loss(w, a; b) = 0.5 * (w - b)^2 + 0.5 * (a - 2b)^2, so dL/dw = w - b, dL/da = a - 2b.
"""
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import config_dict

from rldarts import arch


def loss_fn(params, alphas, batch):
    w, a, b = params["w"], alphas["a"], batch["b"]
    loss = 0.5 * jnp.sum((w - b) ** 2) + 0.5 * jnp.sum((a - 2 * b) ** 2)
    return loss, {}


def _run(mode):
    sgd = optax.sgd(0.1)
    step = arch.make_arch_step(mode, loss_fn, sgd, optax.sgd(0.5))
    params, alphas = {"w": jnp.array(1.0)}, {"a": jnp.array(1.0)}
    train, held = {"b": jnp.array(3.0)}, {"b": jnp.array(-1.0)}
    p, a, _, _, m = step(params, alphas, sgd.init(params), optax.sgd(0.5).init(alphas),
                         train, held)
    return float(p["w"]), float(a["a"]), m


def test_joint_moves_both_on_training_data():
    w, a, m = _run("joint")
    assert w == pytest.approx(1.0 - 0.1 * (1.0 - 3.0))
    assert a == pytest.approx(1.0 - 0.5 * (1.0 - 6.0))
    assert float(m["loss"]) == pytest.approx(0.5 * 4 + 0.5 * 25)


def test_alternating_moves_alphas_on_heldout_data_first():
    w, a, _ = _run("alternating")
    assert a == pytest.approx(1.0 - 0.5 * (1.0 - (-2.0)))  # held-out b = -1
    assert w == pytest.approx(1.0 - 0.1 * (1.0 - 3.0))  # weights on training b = 3


def test_frozen_keeps_alphas():
    w, a, _ = _run("frozen")
    assert a == 1.0 and w == pytest.approx(1.2)


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown arch.mode 'both'.*joint"):
        arch.make_arch_step("both", loss_fn, optax.sgd(1.0), optax.sgd(1.0))


def _cfg(**kw):
    c = config_dict.ConfigDict(dict(mode="joint", optimizer="adam", learning_rate=3e-4,
                                    b1=0.5, b2=0.999, weight_decay=1e-3,
                                    inverse_temperature=1.0, final_inverse_temperature=1.0,
                                    heldout_fraction=0.25))
    c.update(kw)
    return c


def test_alpha_optimizer_is_darts_adam_with_l2():
    """First Adam step moves by lr * sign(g + wd * a) (bias-corrected m/sqrt(v) = sign)."""
    opt = arch.make_alpha_optimizer(_cfg(), optax.sgd(1.0))
    a = jnp.array([1.0, -2.0])
    g = jnp.array([0.5, -0.001])
    upd, _ = opt.update(g, opt.init(a), a)
    expected = -3e-4 * np.sign(np.asarray(g) + 1e-3 * np.asarray(a))
    np.testing.assert_allclose(np.asarray(upd), expected, rtol=1e-4)
    same = optax.sgd(1.0)
    assert arch.make_alpha_optimizer(_cfg(optimizer="same_as_weights"), same) is same


def test_temperature_schedule_and_heldout_split():
    c = _cfg(inverse_temperature=1.0, final_inverse_temperature=5.0)
    assert float(arch.inverse_temperature(c, 0.0)) == 1.0
    assert float(arch.inverse_temperature(c, 0.5)) == 3.0
    assert float(arch.inverse_temperature(c, 2.0)) == 5.0
    assert arch.heldout_envs(_cfg(), 64) == 0  # joint mode uses no held-out envs
    assert arch.heldout_envs(_cfg(mode="alternating"), 64) == 16
    with pytest.raises(ValueError, match="heldout_fraction=0.01 leaves 0 of 8"):
        arch.heldout_envs(_cfg(mode="alternating", heldout_fraction=0.01), 8)


def test_alpha_summary_values():
    ops = ("Conv3x3", "SkipConnection", "Zero")
    alphas = {"normal": [jnp.zeros((1, 3)), jnp.zeros((2, 3))]}
    s = arch.alpha_summary(alphas, ops, 1.0)
    assert s["alpha_entropy"] == pytest.approx(np.log(3), rel=1e-6)
    assert s["param_free_share"] == pytest.approx(2 / 3, rel=1e-6)
    probs = arch.edge_probability_scalars(alphas, ops, 1.0)
    assert len(probs) == 3 * 3 and probs["alpha/normal/n1_e1/Zero"] == pytest.approx(1 / 3)


def test_schedule_reaches_the_final_temperature_on_the_last_iteration():
    c = _cfg(inverse_temperature=1.0, final_inverse_temperature=5.0)
    temps = [float(arch.inverse_temperature(c, arch.schedule_progress(i, 5)))
             for i in range(5)]
    assert temps == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert arch.schedule_progress(0, 1) == 1.0


def test_unseen_levels_need_a_finite_training_set():
    from experiments.configs import base
    from rldarts import config_checks
    c = base.build("smoke")
    c.arch.mode, c.arch.heldout_source, c.num_levels = "alternating", "unseen_levels", 0
    with pytest.raises(ValueError, match="arch.heldout_source='unseen_levels' needs "
                                         "num_levels > 0"):
        config_checks.validate(c)
    c.arch.heldout_source = "rollout_split"
    config_checks.validate(c)
