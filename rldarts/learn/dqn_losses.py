"""Pure, jittable building blocks for the Rainbow-style DQN learner (rlax / Acme style).

* Distributional values are categorical (C51, Bellemare et al. 2017): logits of
  shape (B, A, K) over a fixed, evenly spaced support ``atoms`` of shape (K,).
* Per-sample functions are written for one transition and ``jax.vmap``-ed over the
  batch; losses are returned per sample, shape (B,), for prioritised replay
  weighting / averaging by the caller.
* Exploration follows Ape-X (Horgan et al. 2018): one fixed epsilon per env.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import rlax

Array = chex.Array


def categorical_l2_project(z_p: Array, probs: Array, z_q: Array) -> Array:
    """Projects the distribution (z_p, probs) onto the support z_q (C51 projection).

    Atoms outside [z_q[0], z_q[-1]] are clipped to the boundary; mass at an atom
    lying between two support points is split linearly between them. Works on a
    single distribution (z_p, probs of shape (K,)) or, vmapped, on a batch
    (shape (B, K)); z_q is always the shared support of shape (Kq,).
    """
    chex.assert_rank(z_q, 1)
    chex.assert_equal_shape([z_p, probs])
    if z_p.ndim == 1:
        return rlax.categorical_l2_project(z_p, probs, z_q)
    chex.assert_rank(z_p, 2)
    return jax.vmap(rlax.categorical_l2_project, in_axes=(0, 0, None))(z_p, probs, z_q)


def q_values(q_logits: Array, atoms: Array) -> Array:
    """Expected Q-values sum_k atoms[k] softmax(q_logits)[..., k]: (B, A, K) -> (B, A)."""
    chex.assert_rank([q_logits, atoms], [3, 1])
    chex.assert_axis_dimension(q_logits, 2, atoms.shape[0])
    return jnp.sum(jax.nn.softmax(q_logits, axis=-1) * atoms, axis=-1)


def categorical_double_q_loss(
    q_logits_tm1: Array,
    a_tm1: Array,
    r_t: Array,
    discount_t: Array,
    q_logits_t_target: Array,
    q_logits_t_online: Array,
    atoms: Array,
) -> Array:
    """Distributional double-Q cross-entropy loss, per sample, shape (B,).

    The online network selects a* = argmax_a E[Z_online(s_t, a)]; the target
    network's distribution for a* on atoms r_t + discount_t * atoms is projected
    onto ``atoms`` and, with gradients stopped, is the label for the cross-entropy
    against softmax(q_logits_tm1[a_tm1]). Gradients flow only into q_logits_tm1.

    Shapes: q_logits_* (B, A, K), a_tm1 (B,) int, r_t / discount_t (B,), atoms (K,).
    """
    chex.assert_rank(
        [q_logits_tm1, a_tm1, r_t, discount_t, q_logits_t_target, q_logits_t_online, atoms],
        [3, 1, 1, 1, 3, 3, 1],
    )
    chex.assert_equal_shape([q_logits_tm1, q_logits_t_target, q_logits_t_online])
    chex.assert_equal_shape([a_tm1, r_t, discount_t])
    chex.assert_equal_shape_prefix([q_logits_tm1, a_tm1], 1)
    chex.assert_axis_dimension(q_logits_tm1, 2, atoms.shape[0])
    chex.assert_type(a_tm1, int)

    dtype = q_logits_tm1.dtype
    # The selector goes through an argmax, so no gradient reaches the online logits.
    q_t_selector = jax.lax.stop_gradient(q_values(q_logits_t_online, atoms))
    batched = jax.vmap(rlax.categorical_double_q_learning, in_axes=(None, 0, 0, 0, 0, None, 0, 0))
    return batched(
        atoms.astype(dtype),
        q_logits_tm1,
        a_tm1,
        r_t.astype(dtype),
        discount_t.astype(dtype),
        atoms.astype(dtype),
        q_logits_t_target,
        q_t_selector.astype(dtype),
    )


def apex_epsilons(num_envs: int, base: float = 0.4, alpha: float = 7.0) -> np.ndarray:
    """Ape-X per-env epsilons eps_i = base ** (1 + alpha * i / (N - 1)); N=1 -> [base]."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if num_envs == 1:
        return np.array([base], dtype=np.float32)
    i = np.arange(num_envs, dtype=np.float64)
    return (base ** (1.0 + alpha * i / (num_envs - 1))).astype(np.float32)


def _epsilon_greedy_single(key: Array, q: Array, epsilon: Array) -> Array:
    explore_key, action_key = jax.random.split(key)
    greedy = jnp.argmax(q)  # jnp.argmax returns the lowest index among ties.
    random = jax.random.randint(action_key, (), 0, q.shape[-1])
    explore = jax.random.uniform(explore_key) < epsilon
    return jnp.where(explore, random, greedy).astype(jnp.int32)


def epsilon_greedy(key: Array, q_values: Array, epsilons: Array) -> Array:
    """Per-row epsilon-greedy actions (B,): uniform random w.p. eps_b, else greedy.

    The random branch draws uniformly over all A actions (the greedy one
    included), as in DQN / Ape-X; greedy ties go to the lowest action index.
    """
    chex.assert_rank([q_values, epsilons], [2, 1])
    chex.assert_equal_shape_prefix([q_values, epsilons], 1)
    keys = jax.random.split(key, q_values.shape[0])
    return jax.vmap(_epsilon_greedy_single)(keys, q_values, epsilons)


def transform_reward(r: Array, max_return: float, clip: float = 1.0) -> Array:
    """Scale rewards by the env's max return and clip to [-clip, clip] (RL-DARTS Rainbow)."""
    return jnp.clip(jnp.asarray(r) / max_return, -clip, clip)
