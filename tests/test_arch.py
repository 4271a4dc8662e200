"""Architecture updates: each mode moves the right parameters on the right data.

A quadratic loss with plain SGD makes every update computable by hand:
loss(w, a; b) = 0.5 * (w - b)^2 + 0.5 * (a - 2b)^2, so dL/dw = w - b, dL/da = a - 2b.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import config_dict

from rldarts.learn import arch, ppo_loops


def loss_fn(params, alphas, batch):
    w, a, b = params["w"], alphas["a"], batch["b"]
    loss = 0.5 * jnp.sum((w - b) ** 2) + 0.5 * jnp.sum((a - 2 * b) ** 2)
    return loss, {}


def _run(mode):
    sgd = optax.sgd(0.1)
    step = arch.make_arch_step(mode, loss_fn, sgd, optax.sgd(0.5))
    params, alphas = {"w": jnp.array(1.0)}, {"a": jnp.array(1.0)}
    train, held = {"b": jnp.array(3.0)}, {"b": jnp.array(-1.0)}
    new, m = step(
        arch.ArchState(params, alphas, sgd.init(params), optax.sgd(0.5).init(alphas)), train, held
    )
    return float(new.params["w"]), float(new.alphas["a"]), m


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
    c = config_dict.ConfigDict(
        dict(
            mode="joint",
            optimizer="adam",
            learning_rate=3e-4,
            b1=0.5,
            b2=0.999,
            weight_decay=1e-3,
            inverse_temperature=1.0,
            final_inverse_temperature=1.0,
            heldout_fraction=0.25,
        )
    )
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
    temps = [float(arch.inverse_temperature(c, arch.schedule_progress(i, 5))) for i in range(5)]
    assert temps == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert arch.schedule_progress(0, 1) == 1.0


def test_unseen_levels_need_a_finite_training_set():
    from experiments.configs import base
    from rldarts.run import config_checks

    c = base.build("smoke")
    c.arch.mode, c.arch.heldout_source, c.num_levels = "alternating", "unseen_levels", 0
    with pytest.raises(
        ValueError, match="arch.heldout_source='unseen_levels' needs num_levels > 0"
    ):
        config_checks.validate(c)
    c.arch.heldout_source = "rollout_split"
    config_checks.validate(c)


# Second-order (unrolled) DARTS on a tiny supernet: pred_i = sum_k [s0 tanh(z_ik) +
# s1 z_ik], z = x W, s = softmax(a); loss = mean (pred - y)^2.
def _tiny_loss(params, alphas, batch):
    s = jnp.exp(alphas["a"]) / jnp.sum(jnp.exp(alphas["a"]))
    z = batch["x"] @ params["W"]
    pred = jnp.sum(s[0] * jnp.tanh(z) + s[1] * z, axis=1)
    return jnp.mean((pred - batch["y"]) ** 2), {}


def _np_loss_and_grad_w(W, a, x, y):
    s = np.exp(a) / np.exp(a).sum()
    z = x @ W
    r = np.sum(s[0] * np.tanh(z) + s[1] * z, axis=1) - y
    dz = (2 * r / len(y))[:, None] * (s[0] * (1 - np.tanh(z) ** 2) + s[1])
    return np.mean(r**2), x.T @ dz


def test_unrolled_alpha_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    W, a = rng.normal(size=(3, 2)), np.array([0.3, -0.4])
    train = {"x": rng.normal(size=(5, 3)), "y": rng.normal(size=5)}
    held = {"x": rng.normal(size=(4, 3)), "y": rng.normal(size=4)}
    xi, a_lr = 0.5, 1.0

    def held_out_after_virtual_step(a):
        _, g = _np_loss_and_grad_w(W, a, train["x"], train["y"])
        return _np_loss_and_grad_w(W - xi * g, a, held["x"], held["y"])[0]

    eps = 1e-5
    fd = np.array(
        [
            (held_out_after_virtual_step(a + eps * e) - held_out_after_virtual_step(a - eps * e))
            / (2 * eps)
            for e in np.eye(2)
        ]
    )
    first_order = np.array(
        [
            (
                _np_loss_and_grad_w(W, a + eps * e, held["x"], held["y"])[0]
                - _np_loss_and_grad_w(W, a - eps * e, held["x"], held["y"])[0]
            )
            / (2 * eps)
            for e in np.eye(2)
        ]
    )
    assert np.abs(fd - first_order).max() > 1e-2  # the second-order term matters here

    step = arch.make_arch_step(
        "unrolled", _tiny_loss, optax.sgd(0.1), optax.sgd(a_lr), unrolled_lr=xi
    )
    params, alphas = {"W": jnp.asarray(W, jnp.float32)}, {"a": jnp.asarray(a, jnp.float32)}
    f32 = lambda d: {k: jnp.asarray(v, jnp.float32) for k, v in d.items()}
    new, m = step(
        arch.ArchState(params, alphas, optax.sgd(0.1).init(params), optax.sgd(a_lr).init(alphas)),
        f32(train),
        f32(held),
    )
    p, new_a = new.params, new.alphas
    np.testing.assert_allclose(np.asarray(new_a["a"]), a - a_lr * fd, rtol=1e-4, atol=1e-5)
    assert float(m["alpha_grad_norm"]) == pytest.approx(np.linalg.norm(fd), rel=1e-3)
    # The weights then step on the training batch at the new alphas, as alternating.
    _, g = _np_loss_and_grad_w(W, a - a_lr * fd, train["x"], train["y"])
    np.testing.assert_allclose(np.asarray(p["W"]), W - 0.1 * g, rtol=1e-4, atol=1e-5)


def test_unrolled_needs_a_virtual_step_and_whole_minibatches():
    with pytest.raises(ValueError, match="virtual-step learning rate"):
        arch.make_arch_step("unrolled", _tiny_loss, optax.sgd(0.1), optax.sgd(0.1))
    with pytest.raises(ValueError, match="unrolled' needs whole minibatches"):
        ppo_loops.make_microbatched_arch_step(
            "unrolled", _tiny_loss, optax.sgd(0.1), optax.sgd(0.1), 2
        )


def test_gdas_anneals_the_gumbel_temperature_and_reads_alphas_at_temperature_one():
    c = _cfg(method="gdas", gumbel_tau=10.0, final_gumbel_tau=0.1)
    taus = [
        1.0 / float(arch.inverse_temperature(c, arch.schedule_progress(i, 3))) for i in range(3)
    ]
    np.testing.assert_allclose(taus, [10.0, 5.05, 0.1], rtol=1e-5)
    assert arch.distribution_inverse_temperature(c, 0.5) == 1.0
    assert arch.distribution_inverse_temperature(_cfg(), 0.5) == 0.5
