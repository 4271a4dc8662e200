"""PPO learner (Schulman et al. 2017; Procgen settings of Cobbe et al. 2020).

Reads top to bottom: the acting policy, the loss, then ``update``, which takes a whole
rollout (time-major, ``(T, N, ...)``), computes GAE (a reverse ``lax.scan``, jitted) and
runs ``update_epochs`` x ``num_minibatches`` optimisation steps on shuffled
minibatches. ``ppo.update_loop`` says where those loops run: ``scan`` puts GAE, the
shuffles and every step into one jitted ``lax.scan`` (PureJaxRL; the accelerator
default), ``host`` loops in Python around jitted steps (``make_minibatch_step``: one
jitted step, or on CPU the mean of jitted 256-sample gradient slices,
``ppo.microbatch_size``), the CPU default, because XLA:CPU runs convolutions inside a
``lax.scan`` body ~9-12x slower than the same step jitted on its own. Both loops draw
the same shuffles and make the same update.
Weights and alphas move through ``rldarts.arch.make_arch_step``, so the joint,
alternating and frozen architecture modes are the same code for every agent.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rldarts import arch, networks
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
    """Stochastic acting: sample from the policy logits; extras for the learner. Every
    env group acts alike (``group`` is the actor's group index)."""
    def policy(params, alphas, obs, key, inv_temp, group=0):
        del group
        # A sampled supernet (gdas) draws its architecture per forward pass from a key
        # of its own, so the action stream is the same for every method.
        logits, value = model.apply(params, obs, alphas, inv_temp,
                                    rngs=arch.arch_rngs(jax.random.fold_in(key, 1)))
        actions = jax.random.categorical(key, logits)
        log_probs = ppo_losses.categorical_log_prob(logits, actions)
        return actions, {"log_probs": log_probs, "values": value}
    return policy


def init_state(model, ppo_cfg, arch_cfg, alphas, sample_obs, key, num_updates: int):
    key, init_key = jax.random.split(key)
    params = model.init({"params": init_key, **arch.arch_rngs(init_key)}, sample_obs, alphas)
    weight_opt = make_weight_optimizer(ppo_cfg, num_updates)
    alpha_opt = arch.make_alpha_optimizer(arch_cfg, weight_opt)
    return PPOState(params, alphas, weight_opt.init(params), alpha_opt.init(alphas), key)


# Samples per jitted forward+backward on CPU when ppo.microbatch_size is 0 (auto):
# IMPALA-CNN's gradient runs ~1.7x faster per sample at 256 than at 2048 on XLA:CPU.
CPU_MICROBATCH = 256
# Independent gradients per jitted call on CPU (XLA runs them on both cores at once):
# 4 parts of 64 samples made the IMPALA-CNN minibatch step 1.10-1.18x faster than 1.
CPU_PARTS = 4


UPDATE_LOOPS = ("auto", "scan", "host")


def update_loop(requested: str) -> str:
    """``ppo.update_loop`` resolved: ``auto`` is ``host`` on the CPU backend, else
    ``scan``."""
    if requested not in UPDATE_LOOPS:
        raise ValueError(f"config ppo.update_loop={requested!r} is not valid; valid "
                         f"choices: {', '.join(UPDATE_LOOPS)}")
    if requested == "auto":
        return "host" if jax.default_backend() == "cpu" else "scan"
    return requested


def microbatch_size(requested: int, minibatch_sizes, batch_statistics: bool = False) -> int:
    """Samples per gradient slice of a minibatch; 0 means the whole minibatch at once.

    ``requested`` is ``ppo.microbatch_size``: 0 = auto (``CPU_MICROBATCH`` on the CPU
    backend where it divides every minibatch, else whole minibatches); a value must
    divide every minibatch (training and held-out) that it is smaller than.

    Slicing is the same update only for networks without batch statistics. With
    ``batch_statistics`` (the DARTS torsos) auto takes whole minibatches on every
    backend, so the update is the one the ``scan`` loop and an accelerator make; an
    explicit size is then a hyperparameter, not a compute choice: batch norm over
    ``requested``-sample slices ("ghost batch norm"), part of the resume fingerprint
    (``config_checks.fingerprint``).
    """
    sizes = [m for m in minibatch_sizes if m]
    if requested == 0:
        if jax.default_backend() != "cpu" or batch_statistics:
            return 0
        requested = CPU_MICROBATCH
        if any(m % requested for m in sizes if m > requested):
            return 0
    if requested < 0:
        raise ValueError(f"config ppo.microbatch_size={requested} must be >= 0 "
                         "(0 = auto)")
    if all(m <= requested for m in sizes):
        return 0
    bad = [m for m in sizes if m > requested and m % requested]
    if bad:
        raise ValueError(f"config ppo.microbatch_size={requested} does not divide the "
                         f"minibatch of {bad[0]} samples; use a divisor of it or 0 (auto)")
    return requested


def make_minibatch_step(model, ppo_cfg, arch_cfg, weight_opt, alpha_opt, minibatch_sizes,
                        loop: str = "host", batch_statistics: bool = False):
    """``step(params, alphas, w_state, a_state, train_mb, heldout_mb, inv_temp,
    arch_key)``: one
    optimisation step on a minibatch whose advantages are already normalised (the
    learner normalises each whole minibatch, so microbatched gradients are exact for
    networks without batch statistics; see ``microbatch_size``).
    For the ``host`` loop: jitted, or a host loop over jitted microbatch gradients
    (``microbatch_size``); for ``scan``: the pure step, to be traced inside the scan."""
    def loss_fn(params, alphas, batch, inv_temp, arch_key=None):
        logits, value = model.apply(params, batch["obs"], alphas, inv_temp,
                                    rngs=arch.arch_rngs(arch_key))
        return ppo_losses.ppo_loss(logits, value, batch, ppo_cfg.clip_eps, ppo_cfg.vf_coef,
                                   ppo_cfg.ent_coef, ppo_cfg.clip_value_loss,
                                   norm_adv=False)

    xi = ((arch_cfg.get("unrolled_lr", 0.0) or ppo_cfg.learning_rate)
          if arch_cfg.mode == "unrolled" else 0.0)  # the virtual step's learning rate
    if loop == "scan":
        if ppo_cfg.microbatch_size:
            raise ValueError(f"config ppo.microbatch_size={ppo_cfg.microbatch_size} needs "
                             "ppo.update_loop=host (the scan takes whole minibatches); "
                             "set ppo.microbatch_size=0 or ppo.update_loop=host")
        return arch.make_arch_step(arch_cfg.mode, loss_fn, weight_opt, alpha_opt, xi)
    size = microbatch_size(ppo_cfg.microbatch_size, minibatch_sizes, batch_statistics)
    if size:
        # Parts split the slice again: only where that leaves the update unchanged.
        parts = CPU_PARTS if size % CPU_PARTS == 0 and not batch_statistics else 1
        return arch.make_microbatched_arch_step(arch_cfg.mode, loss_fn, weight_opt,
                                                alpha_opt, size, parts)
    return jax.jit(arch.make_arch_step(arch_cfg.mode, loss_fn, weight_opt, alpha_opt, xi))


def make_update(model, ppo_cfg, arch_cfg, num_envs: int, num_heldout_envs: int,
                num_updates: int, batch_statistics: bool = False):
    """Returns ``update(state, rollout, inv_temp) -> (state, metrics)``: one jitted
    ``lax.scan`` over epochs x minibatches, or jitted GAE and steps driven by a host
    loop (``ppo.update_loop``).

    ``rollout``: 'obs' (T, N, ...), 'actions', 'log_probs', 'values', 'rewards',
    'dones' (T, N) and 'last_obs' (N, ...). The last ``num_heldout_envs`` columns are
    held-out data for alternating architecture updates. ``batch_statistics``: the
    torso normalises over its batch (``networks.uses_batch_statistics``).
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
    loop = update_loop(ppo_cfg.update_loop)
    step = make_minibatch_step(
        model, ppo_cfg, arch_cfg, weight_opt, alpha_opt,
        [n * ppo_cfg.num_steps // nmb for n in (num_train_envs, num_heldout_envs)], loop,
        batch_statistics)

    def prepare(state: PPOState, rollout: dict, inv_temp):
        """GAE over the rollout, flattened into training and held-out sample sets, and
        the new RNG key with the epoch shuffles drawn from the old one."""
        key, perm_key = jax.random.split(state.key)
        _, last_value = model.apply(state.params, rollout["last_obs"], state.alphas, inv_temp,
                                    rngs=arch.arch_rngs(jax.random.fold_in(perm_key, 2)))
        advantages, returns = ppo_losses.gae_advantages(
            rollout["rewards"], rollout["values"], rollout["dones"], last_value,
            ppo_cfg.gamma, ppo_cfg.gae_lambda)
        data = {k: rollout[k] for k in ("obs", "actions", "log_probs", "values")}
        data.update(advantages=advantages, returns=returns)
        flat = lambda tree: jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)
        train = flat(jax.tree.map(lambda x: x[:, :num_train_envs], data))
        heldout = flat(jax.tree.map(lambda x: x[:, num_train_envs:], data))
        # Explained variance of the value targets: a quick health check of the critic.
        explained = 1.0 - jnp.var(returns - rollout["values"]) / (jnp.var(returns) + 1e-8)
        return train, heldout, explained, key, permutations(perm_key), arch_keys(perm_key)

    def permutations(key):
        """Per epoch: shuffled minibatch indices, (epochs, num_minibatches, size)."""
        def one(key, size):
            return jax.random.permutation(key, size).reshape(nmb, size // nmb)
        keys = jax.random.split(key, (ppo_cfg.update_epochs, 2))
        n_train = num_train_envs * ppo_cfg.num_steps
        n_held = max(num_heldout_envs * ppo_cfg.num_steps, nmb)
        return (jax.vmap(lambda k: one(k, n_train))(keys[:, 0]),
                jax.vmap(lambda k: one(k, n_held))(keys[:, 1]))

    def arch_keys(key):
        """Per step, the key a sampled supernet draws its architecture from (shared by
        the step's held-out and training batches), (epochs, num_minibatches) keys."""
        return jax.random.split(jax.random.fold_in(key, 1), (ppo_cfg.update_epochs, nmb))

    def minibatches(train, heldout, idx, held_idx):
        """Gathers one training (and held-out) minibatch; normalises its advantages
        over the whole minibatch (CleanRL) when ``ppo.norm_adv``."""
        def take(data, i):
            mb = jax.tree.map(lambda x: x[i], data)
            if ppo_cfg.norm_adv:
                mb["advantages"] = ppo_losses.normalize_advantages(mb["advantages"])
            return mb
        return take(train, idx), (take(heldout, held_idx) if num_heldout_envs else None)

    def finish(state, key, explained, params, alphas, w_state, a_state, metrics,
               first_kl):
        # approx_kl_first: the first minibatch still has the acting parameters, so any
        # KL there comes from recomputing the behaviour log-probabilities (batch-norm
        # statistics over another batch), not from learning.
        metrics = dict(metrics, explained_variance=explained, approx_kl_first=first_kl)
        return PPOState(params, alphas, w_state, a_state, key), metrics

    @jax.jit
    def scan_update(state: PPOState, rollout: dict, inv_temp):
        train, heldout, explained, key, (train_idx, held_idx), keys = prepare(
            state, rollout, inv_temp)

        def body(carry, xs):
            *idx, arch_key = xs
            train_mb, held_mb = minibatches(train, heldout, *idx)
            *carry, metrics = step(*carry, train_mb, held_mb, inv_temp, arch_key)
            return tuple(carry), metrics

        # (epochs, minibatches, size) -> one scan over every step, in the host order.
        order = lambda idx: idx.reshape((-1,) + idx.shape[2:])
        carry, history = jax.lax.scan(
            body, (state.params, state.alphas, state.weight_opt_state, state.alpha_opt_state),
            (order(train_idx), order(held_idx), order(keys)))
        return finish(state, key, explained, *carry,
                      jax.tree.map(lambda x: jnp.mean(x, axis=0), history),
                      history["approx_kl"][0])

    prepare_jit, minibatches_jit = jax.jit(prepare), jax.jit(minibatches)

    def host_update(state: PPOState, rollout: dict, inv_temp):
        # Epochs and minibatches loop on the host around jitted steps: inside a
        # lax.scan, XLA:CPU ran the same convolutions ~9-12x slower (measured on IMPALA-
        # CNN and the cpu_demo supernet); per-step dispatch costs microseconds here.
        train, heldout, explained, key, (train_idx, held_idx), keys = prepare_jit(
            state, rollout, inv_temp)
        carry = (state.params, state.alphas, state.weight_opt_state, state.alpha_opt_state)
        history = []
        for epoch in range(ppo_cfg.update_epochs):
            for mb in range(nmb):
                train_mb, held_mb = minibatches_jit(train, heldout, train_idx[epoch, mb],
                                                    held_idx[epoch, mb])
                *carry, metrics = step(*carry, train_mb, held_mb, inv_temp,
                                       keys[epoch, mb])
                history.append(metrics)
        metrics = jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *history)
        return finish(state, key, explained, *carry, metrics, history[0]["approx_kl"])

    return scan_update if loop == "scan" else host_update


def collect_rollout(actor, state, num_steps: int, inv_temp):
    """num_steps of acting with the current params; time-major arrays for ``update``."""
    obs, actions, log_probs, values, rewards, dones = [], [], [], [], [], []
    finished = [([], []) for _ in actor.envs]
    for _ in range(num_steps):
        a, extras = actor.act(state.params, state.alphas, inv_temp)
        o, r, d, fin = actor.step(a)
        obs.append(o)
        actions.append(a)
        log_probs.append(extras["log_probs"])
        values.append(extras["values"])
        rewards.append(r)
        dones.append(d)
        for g, (f_ret, f_len) in enumerate(fin):
            finished[g][0].append(f_ret)
            finished[g][1].append(f_len)
    rollout = {"obs": np.stack(obs), "actions": np.stack(actions),
               "log_probs": np.stack(jax.device_get(log_probs)),
               "values": np.stack(jax.device_get(values)),
               "rewards": np.stack(rewards), "dones": np.stack(dones),
               "last_obs": actor.obs}
    return rollout, finished


class Agent:
    """PPO as the experiment driver sees it (``rldarts.experiment``)."""

    def __init__(self, c, torso, num_actions: int, mode: str, num_heldout: int,
                 total_env_steps: int):
        self.cfg = c.ppo
        self.model = networks.Agent(torso, networks.PolicyValueHead(num_actions))
        self.num_envs = c.ppo.num_envs
        self.normalize_reward = c.ppo.normalize_reward
        self.steps_per_iteration = c.ppo.num_envs * c.ppo.num_steps
        iterations = -(-total_env_steps // self.steps_per_iteration)
        self.num_updates = iterations * c.ppo.update_epochs * c.ppo.num_minibatches
        self.arch_cfg = c.arch.copy_and_resolve_references()
        self.arch_cfg.mode = mode
        self.policy = make_policy(self.model)
        self.eval_policy = self.policy  # evaluation with the stochastic policy
        self._update = make_update(self.model, c.ppo, self.arch_cfg, self.num_envs,
                                   num_heldout, self.num_updates,
                                   networks.uses_batch_statistics(c.network))

    def init_state(self, alphas, sample_obs, key) -> PPOState:
        return init_state(self.model, self.cfg, self.arch_cfg, alphas, sample_obs, key,
                          self.num_updates)

    def run_iteration(self, actor, state, inv_temp):
        rollout, finished = collect_rollout(actor, state, self.cfg.num_steps, inv_temp)
        state, metrics = self._update(state, rollout, inv_temp)
        return state, {k: float(v) for k, v in jax.device_get(metrics).items()}, finished

    # PPO keeps nothing on the host between iterations.
    def start_segment(self, seed: int, segment: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def save_extra(self, directory: str, step: int) -> None:
        pass

    def prune_extra(self, directory: str, kept_steps) -> None:
        pass

    def load_extra(self, directory: str, step: int) -> str:
        return ""
