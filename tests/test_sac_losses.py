"""SAC's pure functions (rldarts.learn.sac_losses) against NumPy written from the
formulas: tanh-Gaussian log-probabilities, soft TD targets, the twin-critic, actor and
temperature losses (values and the gradients that matter), DrQ's random shift, the EMA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rldarts.learn import sac_losses as L

RNG = np.random.default_rng(0)


def test_squash_log_std_spans_the_bounds():
    raw = np.array([-50.0, 0.0, 50.0, 0.3])
    out = np.asarray(L.squash_log_std(jnp.asarray(raw)))
    ref = -10 + 0.5 * 12 * (np.tanh(raw) + 1)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    assert out[0] == pytest.approx(-10.0) and out[2] == pytest.approx(2.0)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    mean = RNG.normal(size=(5, 3)).astype(np.float32)
    log_std = RNG.uniform(-1.5, 0.5, size=(5, 3)).astype(np.float32)
    key = jax.random.PRNGKey(3)
    action, logp = L.tanh_gaussian_sample(key, jnp.asarray(mean), jnp.asarray(log_std))
    noise = np.asarray(jax.random.normal(key, mean.shape))
    u = mean.astype(np.float64) + np.exp(log_std) * noise
    std = np.exp(log_std.astype(np.float64))
    gauss = -0.5 * ((u - mean) / std) ** 2 - np.log(std * np.sqrt(2 * np.pi))
    ref = np.sum(gauss - np.log(1 - np.tanh(u) ** 2), axis=1)
    np.testing.assert_allclose(np.asarray(action), np.tanh(u), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(logp), ref, rtol=1e-4, atol=1e-4)
    assert np.all(np.abs(np.asarray(action)) <= 1)


def test_tanh_log_det_is_finite_far_in_the_tails():
    u = jnp.array([[30.0, -30.0]])
    assert np.isfinite(float(L.tanh_log_det(u)[0]))


def test_soft_td_target_and_critic_loss():
    r, d = np.array([1.0, 0.5, -1.0]), np.array([0.99, 0.0, 0.99])
    q1, q2 = np.array([2.0, 3.0, 1.0]), np.array([1.5, 4.0, 2.0])
    logp, temp = np.array([-1.0, 0.5, 2.0]), 0.2
    y = L.soft_td_target(*map(jnp.asarray, (r, d, q1, q2, logp)), temp)
    ref = r + d * (np.minimum(q1, q2) - temp * logp)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-6)
    p1, p2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0])
    loss = L.critic_loss(jnp.asarray(p1), jnp.asarray(p2), y)
    assert float(loss) == pytest.approx(np.mean((p1 - ref) ** 2) + np.mean((p2 - ref) ** 2))
    # The target carries no gradient.
    g = jax.grad(lambda q: jnp.sum(L.soft_td_target(*map(jnp.asarray, (r, d)), q, q, logp, 0.1)))
    np.testing.assert_array_equal(np.asarray(g(jnp.asarray(q1))), 0.0)


def test_actor_loss_and_its_gradients():
    q1, q2, logp = np.array([1.0, -2.0]), np.array([0.5, -1.0]), np.array([-0.3, 0.7])
    temp = 0.5
    loss = L.actor_loss(*map(jnp.asarray, (q1, q2, logp)), temp)
    assert float(loss) == pytest.approx(np.mean(temp * logp - np.minimum(q1, q2)))
    g1, g2, gl = jax.grad(L.actor_loss, argnums=(0, 1, 2))(*map(jnp.asarray, (q1, q2, logp)), temp)
    np.testing.assert_allclose(np.asarray(g1), [0.0, -0.5])  # min picks q2, then q1
    np.testing.assert_allclose(np.asarray(g2), [-0.5, 0.0])
    np.testing.assert_allclose(np.asarray(gl), [temp / 2, temp / 2])
    # The temperature is a constant to the actor.
    gt = jax.grad(lambda t: L.actor_loss(*map(jnp.asarray, (q1, q2, logp)), t))(temp)
    assert float(gt) == 0.0


def test_temperature_loss_pushes_towards_the_target_entropy():
    log_t = jnp.asarray(np.log(0.1), jnp.float32)
    logp = jnp.array([-1.0, -3.0])  # entropy estimate 2
    loss = L.temperature_loss(log_t, logp, -1.0)
    assert float(loss) == pytest.approx(0.1 * np.mean([1.0 + 1.0, 3.0 + 1.0]), rel=1e-5)
    # Entropy 2 above the target -1: the gradient step lowers the temperature ...
    assert float(jax.grad(L.temperature_loss)(log_t, logp, -1.0)) > 0
    # ... and raises it when the entropy is below the target.
    assert float(jax.grad(L.temperature_loss)(log_t, logp, 5.0)) < 0


def test_random_shift_is_an_edge_padded_crop_per_image():
    images = RNG.integers(0, 256, size=(6, 10, 12, 3), dtype=np.uint8)
    key = jax.random.PRNGKey(5)
    out = np.asarray(L.random_shift(key, jnp.asarray(images), pad=4))
    offsets = np.asarray(jax.random.randint(key, (6, 2), 0, 9))
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="edge")
    assert out.dtype == np.uint8
    for i, (dy, dx) in enumerate(offsets):
        np.testing.assert_array_equal(out[i], padded[i, dy : dy + 10, dx : dx + 12])
    assert len({tuple(o) for o in offsets}) > 1  # offsets differ between images


def test_ema():
    new, old = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, 0.0])}
    out = L.ema(new, old, 0.25)
    np.testing.assert_allclose(np.asarray(out["w"]), [0.25 + 2.25, 0.5])
