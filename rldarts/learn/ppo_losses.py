"""Pure, jittable PPO loss building blocks (rlax / Acme style).

All functions are side-effect free, shape-checked with chex and safe to wrap in
`jax.jit`. Conventions follow CleanRL's `ppo_procgen.py` / OpenAI baselines
unless stated otherwise:

* Rollout arrays are time-major, shape (T, N) (T steps, N parallel envs).
* Per-sample loss inputs are flat, shape (B,) (logits: (B, A)).
* Every scalar loss is a *mean* over the batch and is meant to be *minimised*.
"""

from collections.abc import Mapping

import chex
import jax
import jax.numpy as jnp

Array = chex.Array


def _gae_single(rewards, values, dones, last_value, gamma, gae_lambda):
    """GAE for one trajectory: rewards/values/dones (T,), last_value ()."""
    not_done = 1.0 - dones.astype(values.dtype)
    next_values = jnp.concatenate([values[1:], last_value[None]])
    deltas = rewards + gamma * next_values * not_done - values

    def step(carry, x):
        delta_t, not_done_t = x
        adv_t = delta_t + gamma * gae_lambda * not_done_t * carry
        return adv_t, adv_t

    _, advantages = jax.lax.scan(step, jnp.zeros_like(last_value), (deltas, not_done), reverse=True)
    return advantages


def gae_advantages(
    rewards: Array, values: Array, dones: Array, last_value: Array, gamma: float, gae_lambda: float
) -> tuple[Array, Array]:
    """Generalised Advantage Estimation over a (T, N) time-major rollout.

    Done convention: `dones[t]` is True iff the episode *ended after the action
    taken at step t* (i.e. it is the `done` returned by `env.step(a_t)`), so
    state t+1 belongs to a new episode and must not be bootstrapped from:

        delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t,   V_T = last_value
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},  A_T = 0

    `last_value` (N,) is V(s_T), the value of the observation after the final
    step; it is ignored where `dones[T-1]` is True. Hence no `last_done` argument
    is needed. (CleanRL stores instead the done flag *of the observation* at t,
    `d'_t`; convert with `dones = concat([d'[1:], next_done[None]])`.)
    Truncation is treated as termination, as in CleanRL.

    Implemented as a reverse `lax.scan` over time, vmapped over envs.

    Returns:
      (advantages, returns), both (T, N), with returns = advantages + values
      (the TD(lambda) target used for the value loss).
    """
    chex.assert_rank([rewards, values, dones, last_value], [2, 2, 2, 1])
    chex.assert_equal_shape([rewards, values, dones])
    chex.assert_equal_shape_suffix([values, last_value], 1)
    advantages = jax.vmap(_gae_single, in_axes=(1, 1, 1, 0, None, None), out_axes=1)(
        rewards, values, dones, last_value, gamma, gae_lambda
    )
    advantages = jax.lax.stop_gradient(advantages)
    return advantages, advantages + values


def normalize_advantages(adv: Array, eps: float = 1e-8) -> Array:
    """(adv - mean) / (std + eps) over all elements.

    Uses the population std (ddof=0); CleanRL's torch `.std()` uses ddof=1,
    which differs by a factor sqrt(B/(B-1)) -- negligible for PPO minibatches.
    """
    return (adv - jnp.mean(adv)) / (jnp.std(adv) + eps)


def categorical_log_prob(logits: Array, actions: Array) -> Array:
    """Per-sample log pi(a|s), logits (B, A), int actions (B,) -> (B,).

    Uses `log_softmax`, so it is stable for arbitrarily large logits.
    """
    chex.assert_rank([logits, actions], [2, 1])
    chex.assert_equal_shape_prefix([logits, actions], 1)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_probs, actions[:, None].astype(jnp.int32), axis=-1)[:, 0]


def categorical_entropy(logits: Array) -> Array:
    """Per-sample entropy -sum_a p log p, logits (B, A) -> (B,).

    Per-sample (not averaged) so callers can mask/weight; `ppo_loss` averages.
    Computed from `log_softmax`, and as p * logp with p = exp(logp) so a
    -inf/very negative logit contributes exactly 0 rather than NaN.
    """
    chex.assert_rank(logits, 2)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


def clipped_policy_loss(
    log_prob: Array, old_log_prob: Array, advantages: Array, clip_eps: float
) -> Array:
    """PPO clipped surrogate (to minimise), mean over batch.

    L = mean(max(-A * r, -A * clip(r, 1 - eps, 1 + eps))), r = exp(logp - logp_old)
    i.e. the negated pessimistic (min) surrogate of Schulman et al. (2017).
    """
    chex.assert_rank([log_prob, old_log_prob, advantages], 1)
    chex.assert_equal_shape([log_prob, old_log_prob, advantages])
    ratio = jnp.exp(log_prob - old_log_prob)
    loss_unclipped = -advantages * ratio
    loss_clipped = -advantages * jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return jnp.mean(jnp.maximum(loss_unclipped, loss_clipped))


def clipped_value_loss(
    value: Array, old_value: Array, returns: Array, clip_eps: float, clip: bool = True
) -> Array:
    """Value loss, 0.5 * mean squared error, optionally clipped.

    clip=True (CleanRL / baselines): 0.5 * mean(max((v - R)^2,
        (v_old + clip(v - v_old, -eps, eps) - R)^2)), pessimistic like the
    policy loss, so the value cannot move far from the rollout-time value.
    clip=False: 0.5 * mean((v - R)^2).
    """
    chex.assert_rank([value, old_value, returns], 1)
    chex.assert_equal_shape([value, old_value, returns])
    loss_unclipped = jnp.square(value - returns)
    if not clip:
        return 0.5 * jnp.mean(loss_unclipped)
    value_clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    loss_clipped = jnp.square(value_clipped - returns)
    return 0.5 * jnp.mean(jnp.maximum(loss_unclipped, loss_clipped))


def approx_kl(log_prob: Array, old_log_prob: Array) -> Array:
    """Low-variance unbiased KL(old || new) estimator: mean((r - 1) - log r).

    This is the "k3" estimator used by CleanRL (http://joschu.net/blog/kl-approx.html).
    """
    chex.assert_equal_shape([log_prob, old_log_prob])
    log_ratio = log_prob - old_log_prob
    return jnp.mean(jnp.expm1(log_ratio) - log_ratio)


def clip_fraction(log_prob: Array, old_log_prob: Array, clip_eps: float) -> Array:
    """Fraction of samples whose ratio lies outside [1 - eps, 1 + eps]."""
    chex.assert_equal_shape([log_prob, old_log_prob])
    ratio = jnp.exp(log_prob - old_log_prob)
    return jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32))


def ppo_loss(
    logits: Array,
    value: Array,
    batch: Mapping[str, Array],
    clip_eps: float,
    vf_coef: float,
    ent_coef: float,
    clip_value: bool = True,
    norm_adv: bool = True,
) -> tuple[Array, dict[str, Array]]:
    """Total PPO loss: policy_loss - ent_coef * entropy + vf_coef * value_loss.

    Args:
      logits: (B, A) current policy logits; value: (B,) current value estimates.
      batch: rollout-time data, each (B,): 'actions', 'log_probs' (behaviour
        log-probs), 'values' (behaviour values), 'advantages', 'returns'.
      clip_eps: used for both the policy ratio and the value clipping (CleanRL).
      clip_value: clip the value loss (see `clipped_value_loss`).
      norm_adv: normalise advantages per (mini)batch, as CleanRL does.

    Returns:
      (loss, metrics) with metrics policy_loss, value_loss, entropy (mean),
      approx_kl, clip_frac. Diagnostics carry no gradient.
    """
    chex.assert_rank([logits, value], [2, 1])
    chex.assert_equal_shape_prefix([logits, value], 1)
    advantages = batch["advantages"]
    if norm_adv:
        advantages = normalize_advantages(advantages)
    log_prob = categorical_log_prob(logits, batch["actions"])
    old_log_prob = batch["log_probs"]
    policy_loss = clipped_policy_loss(log_prob, old_log_prob, advantages, clip_eps)
    value_loss = clipped_value_loss(
        value, batch["values"], batch["returns"], clip_eps, clip=clip_value
    )
    entropy = jnp.mean(categorical_entropy(logits))
    loss = policy_loss - ent_coef * entropy + vf_coef * value_loss
    sg_log_prob = jax.lax.stop_gradient(log_prob)
    metrics = dict(
        policy_loss=policy_loss,
        value_loss=value_loss,
        entropy=entropy,
        approx_kl=approx_kl(sg_log_prob, old_log_prob),
        clip_frac=clip_fraction(sg_log_prob, old_log_prob, clip_eps),
    )
    return loss, metrics
