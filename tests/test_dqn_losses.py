"""Tests for rldarts.learn.dqn_losses against plain NumPy loop references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rldarts.learn import dqn_losses


# ----------------------------------------------------------------------------- references
def np_c51_project(z_p, probs, z_q):
    """C51 projection (Bellemare et al. 2017, Algorithm 1) for an evenly spaced z_q."""
    k = len(z_q)
    v_min, v_max = float(z_q[0]), float(z_q[-1])
    dz = (v_max - v_min) / (k - 1)
    m = np.zeros(k)
    for j in range(len(z_p)):
        tz = min(max(float(z_p[j]), v_min), v_max)
        b = (tz - v_min) / dz
        lo, hi = math.floor(b), math.ceil(b)
        if lo == hi:
            m[lo] += probs[j]
        else:
            m[lo] += probs[j] * (hi - b)
            m[hi] += probs[j] * (b - lo)
    return m


def np_softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def np_double_q_loss(q_tm1, a_tm1, r_t, d_t, q_t_target, q_t_online, atoms):
    batch, num_actions, _ = q_tm1.shape
    out = np.zeros(batch)
    for b in range(batch):
        means = [np.sum(atoms * np_softmax(q_t_online[b, a])) for a in range(num_actions)]
        a_star = int(np.argmax(means))
        target = np_c51_project(r_t[b] + d_t[b] * atoms, np_softmax(q_t_target[b, a_star]), atoms)
        log_p = np.log(np_softmax(q_tm1[b, a_tm1[b]]))
        out[b] = -np.sum(target * log_p)
    return out


ATOMS = np.linspace(-2.0, 2.0, 5).astype(np.float32)  # dz = 1: exact integer b
ATOMS_51 = np.linspace(-10.0, 10.0, 51).astype(np.float32)


# ----------------------------------------------------------------------------- projection
@pytest.mark.parametrize(
    "r,discount",
    [
        (0.0, 0.9),
        (0.3, 0.99),
        (1.0, 1.0),  # 1.0/1.0: every b is an integer
        (0.7, 0.0),
        (-5.0, 0.0),  # discount 0: point mass at clip(r)
        (1.5, 1.0),
        (-1.5, 0.5),
        (100.0, 0.9),  # partly / fully outside the support
    ],
)
def test_projection_matches_c51(r, discount):
    rng = np.random.default_rng(0)
    for atoms in (ATOMS, ATOMS_51):
        probs = rng.dirichlet(np.ones(len(atoms))).astype(np.float32)
        z_p = (r + discount * atoms).astype(np.float32)
        got = np.asarray(jax.jit(dqn_losses.categorical_l2_project)(z_p, probs, atoms))
        want = np_c51_project(z_p, probs, atoms)
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(got.sum(), 1.0, atol=1e-5)


def test_projection_batched_and_integer_b():
    z_p = np.stack([ATOMS + 1.0, ATOMS * 0.0 + 0.5, ATOMS - 7.0]).astype(np.float32)
    probs = np.full((3, 5), 0.2, np.float32)
    got = np.asarray(dqn_losses.categorical_l2_project(z_p, probs, ATOMS))
    want = np.stack([np_c51_project(z_p[i], probs[i], ATOMS) for i in range(3)])
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(got[0], [0.0, 0.2, 0.2, 0.2, 0.4], atol=1e-6)
    np.testing.assert_allclose(got[1], [0.0, 0.0, 0.5, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(got[2], [1.0, 0.0, 0.0, 0.0, 0.0], atol=1e-6)


# ----------------------------------------------------------------------------- loss
def _loss_inputs(batch=6, num_actions=3, atoms=ATOMS_51, seed=1):
    rng = np.random.default_rng(seed)
    k = len(atoms)
    q_tm1 = rng.normal(size=(batch, num_actions, k)).astype(np.float32)
    q_t_target = rng.normal(size=(batch, num_actions, k)).astype(np.float32)
    q_t_online = (2.0 * rng.normal(size=(batch, num_actions, k))).astype(np.float32)
    a_tm1 = rng.integers(0, num_actions, size=batch).astype(np.int32)
    r_t = np.array([0.0, 1.0, -3.0, 25.0, 0.5, -0.2], np.float32)[:batch]
    d_t = np.array([0.99, 0.0, 0.9, 0.99, 1.0, 0.0], np.float32)[:batch]
    return q_tm1, a_tm1, r_t, d_t, q_t_target, q_t_online, atoms


@pytest.mark.parametrize("atoms", [ATOMS, ATOMS_51])
def test_double_q_loss_matches_numpy(atoms):
    args = _loss_inputs(atoms=atoms)
    got = np.asarray(jax.jit(dqn_losses.categorical_double_q_loss)(*args))
    assert got.shape == (6,)
    np.testing.assert_allclose(got, np_double_q_loss(*args), rtol=1e-4, atol=1e-5)


def test_double_q_loss_uses_online_selection_not_target():
    # Online net prefers action 1, target net prefers action 0: target must use action 1.
    atoms = ATOMS
    q_tm1 = np.array([[[3, 2, 1, 0, 0], [0, 0, 0, 0, 0]]], np.float32)
    q_t_online = np.array([[[9, 0, 0, 0, 0], [0, 0, 0, 0, 9]]], np.float32)
    q_t_target = np.array([[[0, 0, 0, 0, 9], [9, 0, 0, 0, 0]]], np.float32)
    head = (q_tm1, np.array([0], np.int32), np.zeros(1, np.float32), np.ones(1, np.float32))
    got = np.asarray(dqn_losses.categorical_double_q_loss(*head, q_t_target, q_t_online, atoms))
    np.testing.assert_allclose(
        got, np_double_q_loss(*head, q_t_target, q_t_online, atoms), rtol=1e-5
    )
    # Selecting with the target net itself (plain C51) would give a clearly different loss.
    wrong = np_double_q_loss(*head, q_t_target, q_t_target, atoms)
    assert abs(got[0] - wrong[0]) > 1.0


def test_double_q_loss_gradients_only_into_tm1():
    q_tm1, a_tm1, r_t, d_t, q_t_target, q_t_online, atoms = _loss_inputs()

    def total(q_tm1_, q_t_target_, q_t_online_):
        return jnp.sum(
            dqn_losses.categorical_double_q_loss(
                q_tm1_, a_tm1, r_t, d_t, q_t_target_, q_t_online_, atoms
            )
        )

    g_tm1, g_target, g_online = jax.jit(jax.grad(total, argnums=(0, 1, 2)))(
        q_tm1, q_t_target, q_t_online
    )
    np.testing.assert_array_equal(np.asarray(g_target), 0.0)
    np.testing.assert_array_equal(np.asarray(g_online), 0.0)
    # d CE / d logits = softmax(logits) - label on the taken action's row only.
    want = np.zeros_like(q_tm1)
    for b in range(q_tm1.shape[0]):
        means = [np.sum(atoms * np_softmax(q_t_online[b, a])) for a in range(q_tm1.shape[1])]
        label = np_c51_project(
            r_t[b] + d_t[b] * atoms, np_softmax(q_t_target[b, int(np.argmax(means))]), atoms
        )
        want[b, a_tm1[b]] = np_softmax(q_tm1[b, a_tm1[b]]) - label
    np.testing.assert_allclose(np.asarray(g_tm1), want, atol=1e-5)


def test_q_values():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4, 3, 51)).astype(np.float32)
    got = np.asarray(jax.jit(dqn_losses.q_values)(logits, ATOMS_51))
    want = np.zeros((4, 3))
    for b in range(4):
        for a in range(3):
            want[b, a] = np.sum(ATOMS_51 * np_softmax(logits[b, a]))
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, want, atol=1e-5)


# ----------------------------------------------------------------------------- acting
def test_apex_epsilons():
    np.testing.assert_allclose(dqn_losses.apex_epsilons(1), [0.4])
    np.testing.assert_allclose(dqn_losses.apex_epsilons(1, base=0.3), [0.3])
    eps = dqn_losses.apex_epsilons(8)
    assert eps.shape == (8,)
    want = [0.4 ** (1 + 7.0 * i / 7) for i in range(8)]
    np.testing.assert_allclose(eps, want, rtol=1e-6)
    assert eps[0] == pytest.approx(0.4) and eps[-1] == pytest.approx(0.4**8)
    assert np.all(np.diff(eps) < 0)


def test_epsilon_greedy_frequencies():
    n, num_actions = 20000, 4
    q = np.tile(np.array([[1.0, 3.0, 3.0, 0.0]], np.float32), (n, 1))  # tie: 1 and 2
    act = jax.jit(dqn_losses.epsilon_greedy)
    key = jax.random.PRNGKey(0)

    greedy = np.asarray(act(key, q, np.zeros(n, np.float32)))
    assert greedy.shape == (n,)
    np.testing.assert_array_equal(greedy, 1)  # lowest index among ties

    uniform = np.asarray(act(key, q, np.ones(n, np.float32)))
    freq = np.bincount(uniform, minlength=num_actions) / n
    np.testing.assert_allclose(freq, 0.25, atol=0.02)

    # Per-row epsilons: first half greedy, second half eps=0.5 -> P(greedy) = 0.5 + 0.5/4.
    eps = np.concatenate([np.zeros(n // 2), np.full(n // 2, 0.5)]).astype(np.float32)
    mixed = np.asarray(act(jax.random.PRNGKey(1), q, eps))
    np.testing.assert_array_equal(mixed[: n // 2], 1)
    assert np.mean(mixed[n // 2 :] == 1) == pytest.approx(0.625, abs=0.02)
    # Different keys give different draws.
    assert not np.array_equal(
        uniform, np.asarray(act(jax.random.PRNGKey(2), q, np.ones(n, np.float32)))
    )


def test_transform_reward():
    r = np.array([-30.0, -10.0, -1.0, 0.0, 2.5, 10.0, 11.0], np.float32)
    got = np.asarray(jax.jit(dqn_losses.transform_reward, static_argnums=(1, 2))(r, 10.0))
    want = [max(-1.0, min(1.0, x / 10.0)) for x in r]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    got = np.asarray(dqn_losses.transform_reward(r, 10.0, clip=0.5))
    np.testing.assert_allclose(got, [max(-0.5, min(0.5, x / 10.0)) for x in r], rtol=1e-6)
