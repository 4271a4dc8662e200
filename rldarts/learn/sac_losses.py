"""SAC's pieces as small pure functions (rlax style, chex shape checks): the tanh-Gaussian
policy, the soft TD target, the twin-critic, actor and temperature losses (Haarnoja et
al. 2018, "SAC: algorithms and applications"), DrQ's random-shift augmentation
(Kostrikov et al. 2020) and the target network's moving average.

Conventions: ``discounts`` already hold gamma^k (0 at a terminal state), as the replay
returns them; the temperature is ``exp(log_temperature)``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = chex.Array
LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0  # DrQ's actor (log_std_bounds)


def squash_log_std(raw: Array, low: float = LOG_STD_MIN, high: float = LOG_STD_MAX) -> Array:
    """DrQ / SAC-AE: tanh of the network's output, rescaled into [low, high]."""
    return low + 0.5 * (high - low) * (jnp.tanh(raw) + 1.0)


def tanh_log_det(u: Array) -> Array:
    """log(1 - tanh(u)^2) summed over the last axis, in the stable form
    2 (log 2 - u - softplus(-2u)) (as distrax's Tanh bijector)."""
    return jnp.sum(2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


def tanh_gaussian_sample(key: Array, mean: Array, log_std: Array) -> tuple[Array, Array]:
    """(action = tanh(u), log pi(action)) with u ~ N(mean, exp(log_std)) per dimension."""
    chex.assert_equal_shape([mean, log_std])
    chex.assert_rank(mean, 2)
    noise = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + jnp.exp(log_std) * noise
    gaussian = -0.5 * noise**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    return jnp.tanh(u), jnp.sum(gaussian, axis=-1) - tanh_log_det(u)


def soft_td_target(
    rewards: Array,
    discounts: Array,
    next_q1: Array,
    next_q2: Array,
    next_log_probs: Array,
    temperature: Array,
) -> Array:
    """r + discount * (min(Q1', Q2') - temperature * log pi(a'|s')), no gradient."""
    chex.assert_rank([rewards, discounts, next_q1, next_q2, next_log_probs], 1)
    chex.assert_equal_shape([rewards, discounts, next_q1, next_q2, next_log_probs])
    soft_value = jnp.minimum(next_q1, next_q2) - temperature * next_log_probs
    return jax.lax.stop_gradient(rewards + discounts * soft_value)


def critic_loss(q1: Array, q2: Array, targets: Array) -> Array:
    """Twin critics: MSE(Q1, y) + MSE(Q2, y) (DrQ)."""
    chex.assert_rank([q1, q2, targets], 1)
    chex.assert_equal_shape([q1, q2, targets])
    return jnp.mean((q1 - targets) ** 2) + jnp.mean((q2 - targets) ** 2)


def actor_loss(q1: Array, q2: Array, log_probs: Array, temperature: Array) -> Array:
    """E[temperature * log pi(a|s) - min(Q1, Q2)(s, a)], a ~ pi (reparameterised)."""
    chex.assert_rank([q1, q2, log_probs], 1)
    chex.assert_equal_shape([q1, q2, log_probs])
    return jnp.mean(jax.lax.stop_gradient(temperature) * log_probs - jnp.minimum(q1, q2))


def temperature_loss(log_temperature: Array, log_probs: Array, target_entropy: float) -> Array:
    """exp(log_temperature) * E[-log pi - target entropy]: the temperature rises while
    the policy's entropy is below the target (DrQ's alpha loss)."""
    chex.assert_rank(log_temperature, 0)
    chex.assert_rank(log_probs, 1)
    gap = jax.lax.stop_gradient(-log_probs - target_entropy)
    return jnp.exp(log_temperature) * jnp.mean(gap)


def random_shift(key: Array, images: Array, pad: int = 4) -> Array:
    """DrQ's augmentation: replicate-pad each image by ``pad`` pixels and crop it back at
    an offset drawn uniformly from [0, 2 pad]^2, per image (NHWC, any dtype)."""
    chex.assert_rank(images, 4)
    n, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)
    crop = lambda img, off: jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))
    return jax.vmap(crop)(padded, offsets)


def ema(new: chex.ArrayTree, old: chex.ArrayTree, tau: float) -> chex.ArrayTree:
    """Polyak average tau * new + (1 - tau) * old, leaf by leaf (the target critic)."""
    return jax.tree.map(lambda n, o: tau * n + (1.0 - tau) * o, new, old)
