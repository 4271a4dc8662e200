"""Tests for rldarts.learn.ppo_losses against plain-loop NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from rldarts.learn import ppo_losses as pl

RTOL, ATOL = 1e-5, 1e-5


# ----------------------------------------------------------------------------
# Independent NumPy references (explicit Python loops).
# ----------------------------------------------------------------------------
def ref_gae(rewards, values, dones, last_value, gamma, lam):
    T, N = rewards.shape
    adv = np.zeros((T, N), np.float64)
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            next_v = last_value[n] if t == T - 1 else values[t + 1, n]
            nonterminal = 0.0 if dones[t, n] else 1.0
            delta = rewards[t, n] + gamma * next_v * nonterminal - values[t, n]
            running = delta + gamma * lam * nonterminal * running
            adv[t, n] = running
    return adv, adv + values


def ref_log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(x - m) for x in row))
    return [x - lse for x in row]


def ref_log_prob(logits, actions):
    return np.array(
        [ref_log_softmax(list(logits[i]))[int(actions[i])] for i in range(len(actions))]
    )


def ref_entropy(logits):
    out = []
    for row in logits:
        lp = ref_log_softmax(list(row))
        out.append(-sum(math.exp(logp) * logp for logp in lp))
    return np.array(out)


def ref_policy_loss(lp, old_lp, adv, eps):
    total = 0.0
    for a, b, A in zip(lp, old_lp, adv):
        r = math.exp(a - b)
        rc = min(max(r, 1 - eps), 1 + eps)
        total += -min(r * A, rc * A)
    return total / len(lp)


def ref_value_loss(v, old_v, ret, eps, clip=True):
    total = 0.0
    for x, xo, R in zip(v, old_v, ret):
        loss = (x - R) ** 2
        if clip:
            xc = xo + min(max(x - xo, -eps), eps)
            loss = max(loss, (xc - R) ** 2)
        total += loss
    return 0.5 * total / len(v)


def ref_normalize(adv, eps=1e-8):
    n = len(adv)
    mean = sum(adv) / n
    std = math.sqrt(sum((a - mean) ** 2 for a in adv) / n)
    return np.array([(a - mean) / (std + eps) for a in adv])


def ref_approx_kl(lp, old_lp):
    return sum(math.exp(a - b) - 1 - (a - b) for a, b in zip(lp, old_lp)) / len(lp)


def ref_clip_frac(lp, old_lp, eps):
    return sum(abs(math.exp(a - b) - 1) > eps for a, b in zip(lp, old_lp)) / len(lp)


# ----------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------
def make_rollout(seed, T=7, N=4, p_done=0.25):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    dones = rng.random((T, N)) < p_done
    dones[T // 2, 0] = True  # done in the middle
    dones[T - 1, 1] = True  # done at the last step: last_value must be ignored
    dones[:, 2] = False  # never done: full bootstrap from last_value
    last_value = rng.normal(size=(N,)).astype(np.float32) * 10
    return rewards, values, dones, last_value


def make_batch(seed, B=64, A=5, eps=0.2):
    """Batch where ratios straddle the clip region on both sides, both signs of A."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(B, A)).astype(np.float32) * 2
    actions = rng.integers(0, A, size=(B,))
    lp = ref_log_prob(logits, actions)
    # log-ratio choices: far below, inside, far above the clip interval.
    log_ratio = rng.choice([math.log(0.5), 0.0, 0.05, math.log(1.6)], size=B)
    old_lp = (lp - log_ratio).astype(np.float32)
    adv = rng.normal(size=(B,)).astype(np.float32)
    value = rng.normal(size=(B,)).astype(np.float32)
    old_value = (value + rng.normal(size=(B,)) * 0.5).astype(np.float32)
    returns = rng.normal(size=(B,)).astype(np.float32)
    batch = dict(
        actions=actions.astype(np.int32),
        log_probs=old_lp,
        values=old_value,
        advantages=adv,
        returns=returns,
    )
    return logits, value, batch


# ----------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.5, 0.0)])
def test_gae_matches_loop_reference(seed, gamma, lam):
    rewards, values, dones, last_value = make_rollout(seed)
    adv, ret = jax.jit(pl.gae_advantages, static_argnums=(4, 5))(
        rewards, values, dones, last_value, gamma, lam
    )
    adv_ref, ret_ref = ref_gae(rewards, values, dones, last_value, gamma, lam)
    assert adv.shape == rewards.shape and ret.shape == rewards.shape
    np.testing.assert_allclose(adv, adv_ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ret, ret_ref, rtol=RTOL, atol=ATOL)


def test_gae_done_semantics():
    # Single env, T=3, done after step 1: A_2 must not leak into A_1.
    rewards = np.array([[1.0], [2.0], [3.0]], np.float32)
    values = np.array([[0.5], [0.25], [0.125]], np.float32)
    dones = np.array([[False], [True], [True]])
    last_value = np.array([100.0], np.float32)  # ignored: done at last step
    adv, _ = pl.gae_advantages(rewards, values, dones, last_value, 1.0, 1.0)
    # A_2 = 3 - 0.125; A_1 = 2 - 0.25; A_0 = 1 + 0.25 - 0.5 + A_1
    np.testing.assert_allclose(
        np.asarray(adv)[:, 0], [1 + 0.25 - 0.5 + 1.75, 1.75, 2.875], rtol=1e-6
    )


def test_gae_agrees_with_rlax():
    rewards, values, dones, last_value = make_rollout(3)
    gamma, lam = 0.97, 0.9
    adv, _ = pl.gae_advantages(rewards, values, dones, last_value, gamma, lam)
    discounts = gamma * (1.0 - dones.astype(np.float32))
    v_full = np.concatenate([values, last_value[None]], axis=0)
    rlax_adv = jax.vmap(
        rlax.truncated_generalized_advantage_estimation, in_axes=(1, 1, None, 1), out_axes=1
    )(rewards, discounts, lam, v_full)
    np.testing.assert_allclose(adv, rlax_adv, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_categorical_log_prob_and_entropy(seed):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(16, 6)) * 3).astype(np.float32)
    actions = rng.integers(0, 6, size=(16,))
    np.testing.assert_allclose(
        pl.categorical_log_prob(logits, actions),
        ref_log_prob(logits, actions),
        rtol=RTOL,
        atol=ATOL,
    )
    np.testing.assert_allclose(
        pl.categorical_entropy(logits), ref_entropy(logits), rtol=RTOL, atol=ATOL
    )


def test_categorical_numerically_stable():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1e30, 0.0, 0.0]], np.float32)
    lp = pl.categorical_log_prob(logits, np.array([1, 1]))
    ent = pl.categorical_entropy(logits)
    assert np.all(np.isfinite(lp)) and np.all(np.isfinite(ent))
    np.testing.assert_allclose(lp, [-1000.0, -math.log(2)], rtol=1e-6)
    np.testing.assert_allclose(ent, [0.0, math.log(2)], atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clipped_policy_loss(seed):
    eps = 0.2
    logits, _, batch = make_batch(seed, eps=eps)
    lp = ref_log_prob(logits, batch["actions"]).astype(np.float32)
    old, adv = batch["log_probs"], batch["advantages"]
    ratio = np.exp(lp - old)
    # Clipping is actually active on both sides for both signs of advantage.
    for side in (ratio > 1 + eps, ratio < 1 - eps):
        assert np.any(side & (adv > 0)) and np.any(side & (adv < 0))
    got = pl.clipped_policy_loss(lp, old, adv, eps)
    np.testing.assert_allclose(got, ref_policy_loss(lp, old, adv, eps), rtol=RTOL, atol=ATOL)
    # And clipping changes the answer relative to the unclipped surrogate.
    assert abs(float(got) - float(np.mean(-adv * ratio))) > 1e-3


def test_policy_loss_gradient_zero_when_clipped():
    # r = 1.6 > 1+eps with A > 0: clipped branch chosen, zero gradient.
    # r = 0.5 < 1-eps with A > 0: unclipped (pessimistic) branch, nonzero grad.
    old = jnp.zeros(2)
    lp = jnp.array([math.log(1.6), math.log(0.5)])
    adv = jnp.ones(2)
    g = jax.grad(pl.clipped_policy_loss)(lp, old, adv, 0.2)
    assert g[0] == 0.0 and g[1] != 0.0


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_value_loss(seed, clip):
    eps = 0.2
    _, value, batch = make_batch(seed)
    old_v, ret = batch["values"], batch["returns"]
    if clip:
        assert np.any(np.abs(value - old_v) > eps)  # clipping active
    got = pl.clipped_value_loss(value, old_v, ret, eps, clip=clip)
    np.testing.assert_allclose(
        got, ref_value_loss(value, old_v, ret, eps, clip), rtol=RTOL, atol=ATOL
    )


def test_normalize_advantages():
    adv = np.random.default_rng(0).normal(3.0, 2.0, size=(50,)).astype(np.float32)
    got = pl.normalize_advantages(adv)
    np.testing.assert_allclose(got, ref_normalize(adv), rtol=1e-4, atol=1e-5)
    # Constant input stays finite.
    assert np.all(np.isfinite(pl.normalize_advantages(jnp.ones(4))))


def test_approx_kl_and_clip_fraction():
    eps = 0.2
    logits, _, batch = make_batch(4, eps=eps)
    lp = ref_log_prob(logits, batch["actions"]).astype(np.float32)
    old = batch["log_probs"]
    np.testing.assert_allclose(pl.approx_kl(lp, old), ref_approx_kl(lp, old), rtol=RTOL, atol=ATOL)
    cf = float(pl.clip_fraction(lp, old, eps))
    assert 0.0 < cf < 1.0
    np.testing.assert_allclose(cf, ref_clip_frac(lp, old, eps), atol=1e-7)
    assert float(pl.approx_kl(old, old)) == 0.0


@pytest.mark.parametrize("clip_value,norm_adv", [(True, True), (False, False)])
def test_ppo_loss_matches_reference_and_jits(clip_value, norm_adv):
    eps, vf, ent = 0.2, 0.5, 0.01
    logits, value, batch = make_batch(5, eps=eps)
    fn = jax.jit(pl.ppo_loss, static_argnames=("clip_value", "norm_adv"))
    loss, m = fn(logits, value, batch, eps, vf, ent, clip_value=clip_value, norm_adv=norm_adv)

    lp = ref_log_prob(logits, batch["actions"])
    old = batch["log_probs"].astype(np.float64)
    adv = batch["advantages"].astype(np.float64)
    if norm_adv:
        adv = ref_normalize(adv)
    pg = ref_policy_loss(lp, old, adv, eps)
    vl = ref_value_loss(value, batch["values"], batch["returns"], eps, clip_value)
    en = float(np.mean(ref_entropy(logits)))
    tol = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m["policy_loss"], pg, **tol)
    np.testing.assert_allclose(m["value_loss"], vl, **tol)
    np.testing.assert_allclose(m["entropy"], en, **tol)
    np.testing.assert_allclose(m["approx_kl"], ref_approx_kl(lp, old), **tol)
    np.testing.assert_allclose(m["clip_frac"], ref_clip_frac(lp, old, eps), **tol)
    np.testing.assert_allclose(loss, pg - ent * en + vf * vl, **tol)


def test_ppo_loss_grad_finite():
    logits, value, batch = make_batch(6)

    def f(lg, v):
        return pl.ppo_loss(lg, v, batch, 0.2, 0.5, 0.01)[0]

    g_logits, g_value = jax.jit(jax.grad(f, argnums=(0, 1)))(logits, value)
    assert g_logits.shape == logits.shape and g_value.shape == value.shape
    assert np.all(np.isfinite(g_logits)) and np.all(np.isfinite(g_value))
    assert np.any(g_logits != 0) and np.any(g_value != 0)
    # Extreme logits stay finite too.
    g_big, _ = jax.grad(f, argnums=(0, 1))(logits * 1e3, value)
    assert np.all(np.isfinite(g_big))


def test_shape_checks_raise():
    with pytest.raises(AssertionError):
        pl.clipped_policy_loss(jnp.zeros(3), jnp.zeros(4), jnp.zeros(3), 0.2)
    with pytest.raises(AssertionError):
        pl.gae_advantages(
            jnp.zeros((3, 2)), jnp.zeros((3, 2)), jnp.zeros((3, 2)), jnp.zeros((3,)), 0.99, 0.95
        )
