"""PPO learner (Schulman et al. 2017; Procgen settings of Cobbe et al. 2020).

Reads top to bottom: the acting policy, the loss, then one jitted ``update`` that takes
a whole rollout (time-major, ``(T, N, ...)``), computes GAE and runs
``update_epochs`` x ``num_minibatches`` optimisation steps as nested ``lax.scan``s.
Weights and alphas move through ``rldarts.arch.make_arch_step``, so the joint,
alternating and frozen architecture modes are the same code for every agent.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from rldarts import arch
from rldarts.agents import ppo_losses


class PPOState(NamedTuple):
    params: dict
    alphas: dict
    weight_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    key: jax.Array


def make_weight_optimizer(ppo_cfg, num_updates: int) -> optax.GradientTransformation:
    """Adam(eps 1e-5) after global grad-norm clipping; lr optionally annealed to 0."""
    lr = (optax.linear_schedule(ppo_cfg.learning_rate, 0.0, num_updates)
          if ppo_cfg.anneal_lr else ppo_cfg.learning_rate)
    return optax.chain(optax.clip_by_global_norm(ppo_cfg.max_grad_norm),
                       optax.adam(lr, eps=ppo_cfg.adam_eps))


def make_policy(model):
    """Stochastic acting: sample from the policy logits; extras for the learner."""
    def policy(params, alphas, obs, key, inv_temp):
        logits, value = model.apply(params, obs, alphas, inv_temp)
        actions = jax.random.categorical(key, logits)
        log_probs = ppo_losses.categorical_log_prob(logits, actions)
        return actions, {"log_probs": log_probs, "values": value}
    return policy


def init_state(model, ppo_cfg, arch_cfg, alphas, sample_obs, key, num_updates: int):
    key, init_key = jax.random.split(key)
    params = model.init(init_key, sample_obs, alphas)
    weight_opt = make_weight_optimizer(ppo_cfg, num_updates)
    alpha_opt = arch.make_alpha_optimizer(arch_cfg, weight_opt)
    return PPOState(params, alphas, weight_opt.init(params), alpha_opt.init(alphas), key)


def make_update(model, ppo_cfg, arch_cfg, num_envs: int, num_heldout_envs: int,
                num_updates: int):
    """Returns ``update(state, rollout, inv_temp) -> (state, metrics)``, jitted.

    ``rollout``: 'obs' (T, N, ...), 'actions', 'log_probs', 'values', 'rewards',
    'dones' (T, N) and 'last_obs' (N, ...). The last ``num_heldout_envs`` columns are
    held-out data for alternating architecture updates.
    """
    weight_opt = make_weight_optimizer(ppo_cfg, num_updates)
    alpha_opt = arch.make_alpha_optimizer(arch_cfg, weight_opt)
    num_train_envs = num_envs - num_heldout_envs
    nmb = ppo_cfg.num_minibatches
    for name, n in (("training", num_train_envs * ppo_cfg.num_steps),
                    ("held-out", num_heldout_envs * ppo_cfg.num_steps)):
        if n % nmb:
            raise ValueError(f"ppo.num_minibatches={nmb} does not divide the {n} {name} "
                             "samples of a rollout (num_envs x num_steps)")

    def loss_fn(params, alphas, batch, inv_temp):
        logits, value = model.apply(params, batch["obs"], alphas, inv_temp)
        return ppo_losses.ppo_loss(logits, value, batch, ppo_cfg.clip_eps, ppo_cfg.vf_coef,
                                   ppo_cfg.ent_coef, ppo_cfg.clip_value_loss,
                                   ppo_cfg.norm_adv)

    def minibatches(data, key):
        """Shuffle flat (B, ...) data and split into (num_minibatches, B/nmb, ...)."""
        size = data["actions"].shape[0]
        perm = jax.random.permutation(key, size)
        return jax.tree.map(lambda x: x[perm].reshape((nmb, size // nmb) + x.shape[1:]),
                            data)

    def update(state: PPOState, rollout: dict, inv_temp):
        params, alphas = state.params, state.alphas
        _, last_value = model.apply(params, rollout["last_obs"], alphas, inv_temp)
        advantages, returns = ppo_losses.gae_advantages(
            rollout["rewards"], rollout["values"], rollout["dones"], last_value,
            ppo_cfg.gamma, ppo_cfg.gae_lambda)
        data = {k: rollout[k] for k in ("obs", "actions", "log_probs", "values")}
        data.update(advantages=advantages, returns=returns)
        flat = lambda tree: jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)
        train = flat(jax.tree.map(lambda x: x[:, :num_train_envs], data))
        heldout = flat(jax.tree.map(lambda x: x[:, num_train_envs:], data))
        step = arch.make_arch_step(arch_cfg.mode,
                                   lambda p, a, b: loss_fn(p, a, b, inv_temp),
                                   weight_opt, alpha_opt)

        def epoch(carry, key):
            k_train, k_held = jax.random.split(key)
            mbs = (minibatches(train, k_train),
                   minibatches(heldout, k_held) if num_heldout_envs else None)

            def minibatch_step(carry, mb):
                params, alphas, w_state, a_state = carry
                params, alphas, w_state, a_state, metrics = step(
                    params, alphas, w_state, a_state, mb[0], mb[1])
                return (params, alphas, w_state, a_state), metrics

            return jax.lax.scan(minibatch_step, carry, mbs)

        key, epoch_key = jax.random.split(state.key)
        carry = (params, alphas, state.weight_opt_state, state.alpha_opt_state)
        carry, metrics = jax.lax.scan(epoch, carry,
                                      jax.random.split(epoch_key, ppo_cfg.update_epochs))
        metrics = jax.tree.map(jnp.mean, metrics)
        # Explained variance of the value targets: a quick health check of the critic.
        var_ret = jnp.var(returns)
        metrics["explained_variance"] = 1.0 - jnp.var(returns - rollout["values"]) / (
            var_ret + 1e-8)
        return PPOState(*carry, key), metrics

    return jax.jit(update)
