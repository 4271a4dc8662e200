"""Microbatched steps: the gradient of a minibatch accumulated over slices is the
gradient of the whole minibatch (checked by hand for the arch modes and against a
direct whole-batch ``jax.grad`` for PPO), and bad microbatch sizes are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import config_dict

from rldarts.learn import arch, ppo, ppo_loops, ppo_losses
from rldarts.model import networks


def mean_loss(params, alphas, batch, scale):
    """loss = scale * mean_i [0.5 (w - b_i)^2 + 0.5 (a - 2 b_i)^2]"""
    w, a, b = params["w"], alphas["a"], batch["b"]
    per_sample = 0.5 * (w - b) ** 2 + 0.5 * (a - 2 * b) ** 2
    return scale * jnp.mean(per_sample), {"b_mean": jnp.mean(b)}


TRAIN_B = np.array([3.0, -1.0, 0.5, 2.0, 4.0, -2.5], np.float32)
HELD_B = np.array([-1.0, 1.5, 0.0, 2.0], np.float32)


@pytest.mark.parametrize("size,parts", [(2, 1), (2, 2), (6, 3)])
@pytest.mark.parametrize("mode", ["joint", "alternating", "frozen"])
def test_microbatched_arch_step_matches_hand_computation(mode, size, parts):
    w_lr, a_lr, scale, w0, a0 = 0.1, 0.5, 2.0, 1.0, 1.0
    if mode == "alternating" and size == 6:
        size, parts = 1, 1  # must divide the 4 held-out and the 6 training samples
    step = ppo_loops.make_microbatched_arch_step(
        mode, mean_loss, optax.sgd(w_lr), optax.sgd(a_lr), size, parts
    )
    params, alphas = {"w": jnp.float32(w0)}, {"a": jnp.float32(a0)}
    new, m = step(
        arch.ArchState(params, alphas, optax.sgd(w_lr).init(params), optax.sgd(a_lr).init(alphas)),
        {"b": jnp.asarray(TRAIN_B)},
        {"b": jnp.asarray(HELD_B)},
        jnp.float32(scale),
    )
    p, a = new.params, new.alphas
    # By hand: dL/dw = scale * mean(w - b), dL/da = scale * mean(a - 2b).
    a_expected = a0
    if mode == "alternating":
        a_expected = a0 - a_lr * scale * np.mean(a0 - 2 * HELD_B)
    w_expected = w0 - w_lr * scale * np.mean(w0 - TRAIN_B)
    if mode == "joint":
        a_expected = a0 - a_lr * scale * np.mean(a0 - 2 * TRAIN_B)
    assert float(p["w"]) == pytest.approx(w_expected, rel=1e-6)
    assert float(a["a"]) == pytest.approx(a_expected, rel=1e-6)
    a_at_train = a_expected if mode == "alternating" else a0
    loss = scale * np.mean(0.5 * (w0 - TRAIN_B) ** 2 + 0.5 * (a_at_train - 2 * TRAIN_B) ** 2)
    assert float(m["loss"]) == pytest.approx(loss, rel=1e-6)
    assert float(m["b_mean"]) == pytest.approx(TRAIN_B.mean(), rel=1e-6)
    held_or_train = {"joint": TRAIN_B, "alternating": HELD_B}.get(mode)
    a_grad = 0.0 if held_or_train is None else abs(scale * np.mean(a0 - 2 * held_or_train))
    assert float(m["alpha_grad_norm"]) == pytest.approx(a_grad, rel=1e-6)


def test_parts_must_divide_the_microbatch():
    with pytest.raises(ValueError, match="3 parts do not divide a microbatch of 4"):
        ppo_loops.make_microbatched_arch_step(
            "joint", mean_loss, optax.sgd(0.1), optax.sgd(0.1), 4, 3
        )


def test_microbatch_size_must_divide_the_batch():
    step = ppo_loops.make_microbatched_arch_step(
        "joint", mean_loss, optax.sgd(0.1), optax.sgd(0.1), microbatch_size=4
    )
    params, alphas = {"w": jnp.float32(1.0)}, {"a": jnp.float32(1.0)}
    with pytest.raises(ValueError, match="microbatch size 4 does not divide a batch of 6"):
        step(
            arch.ArchState(
                params, alphas, optax.sgd(0.1).init(params), optax.sgd(0.1).init(alphas)
            ),
            {"b": jnp.asarray(TRAIN_B)},
            None,
            jnp.float32(1.0),
        )


def test_microbatch_size_resolution():
    assert ppo.microbatch_size(0, [2048]) == 256  # auto on CPU
    assert ppo.microbatch_size(0, [256]) == 0  # already small: one step
    assert ppo.microbatch_size(0, [1536, 512]) == 256
    assert ppo.microbatch_size(0, [2048, 300]) == 0  # auto never fails
    assert ppo.microbatch_size(512, [2048, 512]) == 512
    assert ppo.microbatch_size(4096, [2048]) == 0
    with pytest.raises(
        ValueError, match="ppo.microbatch_size=100 does not divide the minibatch of 2048"
    ):
        ppo.microbatch_size(100, [2048])
    with pytest.raises(ValueError, match="ppo.microbatch_size=-1 must be >= 0"):
        ppo.microbatch_size(-1, [2048])


def _ppo_cfg(microbatch):
    return config_dict.ConfigDict(
        dict(
            clip_eps=0.2,
            vf_coef=0.5,
            ent_coef=0.01,
            clip_value_loss=True,
            microbatch_size=microbatch,
        )
    )


def test_ppo_microbatched_step_is_the_whole_minibatch_gradient():
    """One SGD(lr=1) step moves the params by minus the gradient: with 4 microbatches
    of 8 it must equal the gradient of the PPO loss over all 32 samples, taken here
    directly with advantages normalised over the whole minibatch."""
    model = networks.Agent(
        networks.make_torso("impala", depths=(4, 4, 4), dense=16), networks.PolicyValueHead(5)
    )
    rng = np.random.default_rng(0)
    n = 32
    batch = {
        "obs": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
        "actions": rng.integers(0, 5, n).astype(np.int32),
        "log_probs": rng.normal(-1.6, 0.1, n).astype(np.float32),
        "values": rng.normal(0, 1, n).astype(np.float32),
        "advantages": rng.normal(0.5, 2, n).astype(np.float32),
        "returns": rng.normal(0, 1, n).astype(np.float32),
    }
    params = model.init(jax.random.PRNGKey(0), batch["obs"][:1])
    arch_cfg = config_dict.ConfigDict(dict(mode="frozen"))
    sgd = optax.sgd(1.0)

    def reference_loss(p):
        logits, value = model.apply(p, batch["obs"])
        return ppo_losses.ppo_loss(logits, value, batch, 0.2, 0.5, 0.01, True, norm_adv=True)[0]

    grads = jax.grad(reference_loss)(params)

    normalised = dict(batch, advantages=ppo_losses.normalize_advantages(batch["advantages"]))
    step = ppo.make_minibatch_step(model, _ppo_cfg(8), arch_cfg, sgd, sgd, [n])
    new, metrics = step(
        arch.ArchState(params, {}, sgd.init(params), sgd.init({})),
        jax.device_put(normalised),
        None,
        1.0,
    )
    new_params = new.params
    moved = jax.tree.map(lambda a, b: a - b, params, new_params)
    for got, want in zip(jax.tree.leaves(moved), jax.tree.leaves(grads)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6)
    assert float(metrics["loss"]) == pytest.approx(float(reference_loss(params)), rel=1e-5)


def test_microbatch_size_may_change_on_resume():
    """Compute-only keys are left out of the resume fingerprint; hyperparameters not.
    (For DARTS networks, which normalise over their batch, microbatch_size is a
    hyperparameter: tests/test_batch_statistics.py.)"""
    from experiments.configs import base
    from rldarts.run import config_checks

    a, b = base.get_base_config(), base.get_base_config()
    a.network = b.network = "impala"
    b.ppo.microbatch_size = 512
    assert config_checks.fingerprint(a) == config_checks.fingerprint(b)
    assert "microbatch_size" not in config_checks.fingerprint(a)["ppo"]
    b.ppo.num_minibatches = 4
    assert config_checks.fingerprint(a) != config_checks.fingerprint(b)
