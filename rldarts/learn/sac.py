"""SAC from pixels (DrQ-style; the RL-DARTS paper's PI-SAC with its contrastive part off):
twin critics with an EMA target, a tanh-Gaussian actor, a learned entropy temperature,
DrQ's random-shift augmentation; the encoder (a supernet during a search) is shared and
trained by the critic loss only: the actor sees its features through a stop-gradient.

Reads top to bottom: optimizers, acting policies, the jitted learner step (the critic
and alphas through ``rldarts.learn.arch.make_arch_step`` like PPO and DQN, then the actor
and temperature, then the target average), and ``Agent``. The host loop (acting, replay,
samples per insert, replay checkpoints) is DQN's (``dqn.Learner``, ``dqn.Agent``).
Settings: config section ``sac`` (DrQ's, experiments/configs/base.py).

One deviation from DrQ: the actor loss reads the encoder features of the critic step's
forward pass (before that step) instead of a fresh forward pass after it: the gradient
stops at the encoder either way, and an 84x84 encoder pass is the costly part on CPU.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rldarts.common import host
from rldarts.learn import arch, dqn, parallel, sac_losses
from rldarts.learn.replay import PrioritizedReplay
from rldarts.model import networks


class SACState(NamedTuple):
    params: dict  # {'torso', 'actor_head', 'critic_head'}
    alphas: dict
    weight_opt_state: optax.OptState  # the critic (+ encoder) optimizer
    alpha_opt_state: optax.OptState
    key: jax.Array
    target_params: dict
    target_alphas: dict
    actor_opt_state: optax.OptState
    log_temperature: jax.Array
    temperature_opt_state: optax.OptState
    learner_steps: jax.Array

    @property
    def arch_state(self) -> arch.ArchState:
        return arch.ArchState(self.params, self.alphas, self.weight_opt_state, self.alpha_opt_state)


def _labels(params):
    """'actor' for the actor head's leaves, 'critic' for the encoder's and critics'."""
    is_actor = lambda path: any(getattr(k, "key", None) == "actor_head" for k in path)
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "actor" if is_actor(path) else "critic", params
    )


def make_optimizers(cfg):
    """(critic, actor, temperature) optimizers; the first two see the whole params tree
    and move only their own part (the encoder belongs to the critic)."""
    adam = lambda lr, b1=0.9: optax.adam(lr, b1=b1)
    critic = optax.multi_transform(
        {"critic": adam(cfg.learning_rate), "actor": optax.set_to_zero()}, _labels
    )
    actor = optax.multi_transform(
        {"actor": adam(cfg.actor_learning_rate), "critic": optax.set_to_zero()}, _labels
    )
    return critic, actor, adam(cfg.temperature_learning_rate, 0.5)  # DrQ: alpha betas 0.5


def _sample_action(model, params, features, key):
    mean, raw_log_std = model.apply(params, features, method="actor")
    return sac_losses.tanh_gaussian_sample(key, mean, sac_losses.squash_log_std(raw_log_std))


def make_policy(model, deterministic: bool = False):
    """Acting: a ~ pi(.|s) (``deterministic``: tanh of the mean, for evaluation)."""

    def policy(params, alphas, obs, key, inv_temp, group=0):
        rngs = arch.arch_rngs(jax.random.fold_in(key, 1))
        features = model.apply(params, obs, alphas, inv_temp, method="encode", rngs=rngs)
        if deterministic:
            return jnp.tanh(model.apply(params, features, method="actor")[0]), {}
        return _sample_action(model, params, features, key)[0], {}

    return policy


def init_state(model, cfg, arch_cfg, alphas, sample_obs, action_dim, key, topology=None):
    key, init_key = jax.random.split(key)
    actions = jnp.zeros((sample_obs.shape[0], action_dim), jnp.float32)
    params = model.init(
        {"params": init_key, **arch.arch_rngs(init_key)}, sample_obs, actions, alphas
    )
    critic_opt, actor_opt, temp_opt = make_optimizers(cfg)
    log_temp = jnp.asarray(np.log(cfg.init_temperature), jnp.float32)
    state = SACState(
        params,
        alphas,
        critic_opt.init(params),
        arch.make_alpha_optimizer(arch_cfg, critic_opt).init(alphas),
        key,
        params,
        alphas,
        actor_opt.init(params),
        log_temp,
        temp_opt.init(log_temp),
        jnp.zeros((), jnp.int32),
    )
    return (topology or parallel.single_device()).replicate(state)


def make_critic_loss(model, cfg):
    """``loss(params, alphas, batch, target_params, target_alphas, temperature, key,
    inv_temp) -> (loss, metrics)``; metrics['features'] are the encoder's (no gradient)."""

    def loss_fn(params, alphas, batch, target_params, target_alphas, temperature, key, inv_temp):
        key, aug_key, next_aug_key, arch_key = jax.random.split(key, 4)
        rngs = arch.arch_rngs(arch_key)  # one draw (gdas) for the step's passes
        obs = sac_losses.random_shift(aug_key, batch["obs"], cfg.image_pad)
        next_obs = sac_losses.random_shift(next_aug_key, batch["next_obs"], cfg.image_pad)
        encode = lambda p, a, o: model.apply(p, o, a, inv_temp, method="encode", rngs=rngs)
        next_f = jax.lax.stop_gradient(encode(params, alphas, next_obs))
        next_a, next_logp = _sample_action(model, params, next_f, key)
        target_f = encode(target_params, target_alphas, next_obs)
        tq1, tq2 = model.apply(target_params, target_f, next_a, method="critic")
        targets = sac_losses.soft_td_target(
            batch["rewards"], batch["discounts"], tq1, tq2, next_logp, temperature
        )
        features = encode(params, alphas, obs)
        q1, q2 = model.apply(params, features, batch["actions"], method="critic")
        loss = sac_losses.critic_loss(q1, q2, targets)
        metrics = {"critic_loss": loss, "q_mean": jnp.mean(q1), "target_mean": jnp.mean(targets)}
        return loss, dict(metrics, features=jax.lax.stop_gradient(features))

    return loss_fn


def _select(flag, new, old):
    return jax.tree.map(lambda n, o: jnp.where(flag, n, o), new, old)


def make_actor_update(model, cfg, action_dim: int):
    """``update(params, actor_opt_state, log_temp, temp_opt_state, features, key)``: one
    actor step (critic heads held fixed by the masked optimizer) and one temperature
    step, with DrQ's target entropy -action_dim."""
    _, actor_opt, temp_opt = make_optimizers(cfg)

    def actor_loss(params, features, log_temp, key):
        actions, log_probs = _sample_action(model, params, features, key)
        q1, q2 = model.apply(params, features, actions, method="critic")
        return sac_losses.actor_loss(q1, q2, log_probs, jnp.exp(log_temp)), log_probs

    def update(params, actor_opt_state, log_temp, temp_opt_state, features, key):
        (loss, log_probs), grads = jax.value_and_grad(actor_loss, has_aux=True)(
            params, features, log_temp, key
        )
        params, actor_opt_state = arch.apply_updates(actor_opt, grads, actor_opt_state, params)
        temp_grad = jax.grad(sac_losses.temperature_loss)(log_temp, log_probs, -float(action_dim))
        log_temp, temp_opt_state = arch.apply_updates(temp_opt, temp_grad, temp_opt_state, log_temp)
        metrics = {"actor_loss": loss, "entropy": -jnp.mean(log_probs)}
        return (params, actor_opt_state, log_temp, temp_opt_state), metrics

    return update


def make_learner_step(model, cfg, arch_cfg, action_dim: int, topology=None):
    """``step(state, batch, heldout_batch, inv_temp) -> (state, metrics)``, jitted: the
    critic (+ encoder, + alphas by ``arch.mode``) step, every ``actor_update_period``-th
    step the actor and temperature, every ``target_update_period``-th the target EMA."""
    topology = topology or parallel.single_device()
    critic_opt, _, _ = make_optimizers(cfg)
    alpha_opt = arch.make_alpha_optimizer(arch_cfg, critic_opt)
    critic_loss = make_critic_loss(model, cfg)
    actor_update = make_actor_update(model, cfg, action_dim)

    @jax.jit
    def step(state: SACState, batch, heldout_batch, inv_temp):
        key, critic_key, actor_key = jax.random.split(state.key, 3)
        temperature = jnp.exp(state.log_temperature)
        arch_step = arch.make_arch_step(
            arch_cfg.mode,
            lambda p, a, b: critic_loss(
                p,
                a,
                b,
                state.target_params,
                state.target_alphas,
                temperature,
                critic_key,
                inv_temp,
            ),
            critic_opt,
            alpha_opt,
            arch_cfg.get("unrolled_lr", 0.0) or cfg.learning_rate,
        )
        moved, metrics = arch_step(state.arch_state, batch, heldout_batch)
        features = metrics.pop("features")
        steps = state.learner_steps + 1
        actor_part = (
            moved.params,
            state.actor_opt_state,
            state.log_temperature,
            state.temperature_opt_state,
        )
        updated, actor_metrics = actor_update(*actor_part, features, actor_key)
        params, actor_opt_state, log_temp, temp_opt_state = _select(
            steps % cfg.actor_update_period == 0, updated, actor_part
        )
        due = steps % cfg.target_update_period == 0
        target_params = _select(
            due, sac_losses.ema(params, state.target_params, cfg.tau), state.target_params
        )
        target_alphas = _select(
            due, sac_losses.ema(moved.alphas, state.target_alphas, cfg.tau), state.target_alphas
        )
        new_state = SACState(
            params,
            moved.alphas,
            moved.weight_opt_state,
            moved.alpha_opt_state,
            key,
            target_params,
            target_alphas,
            actor_opt_state,
            log_temp,
            temp_opt_state,
            steps,
        )
        metrics = dict(metrics, **actor_metrics, temperature=jnp.exp(log_temp))
        return topology.constrain_replicated(new_state), metrics

    return step


class Agent(dqn.Agent):
    """SAC as the experiment driver sees it: DQN's host loop, replay checkpoints and
    segment bookkeeping; its own model, step, acting and uniform replay."""

    normalize_reward = False
    continuous_actions = True

    def __init__(
        self,
        c,
        torso,
        num_actions,
        mode,
        num_heldout,
        total_env_steps,
        topology=None,
        env_spec=None,
    ):
        d = self.cfg = c.sac
        self.topology = topology = topology or parallel.single_device()
        self.action_dim = env_spec.action_dim
        self.model = networks.SACNetwork(torso, self.action_dim, d.hidden)
        self.num_envs = d.num_envs
        self.steps_per_iteration = max(1, d.iteration_env_steps // d.num_envs) * d.num_envs
        self.arch_cfg = c.arch.copy_and_resolve_references()
        self.arch_cfg.mode = mode
        self.policy = make_policy(self.model)
        self.eval_policy = make_policy(self.model, deterministic=True)
        groups = [d.num_envs - num_heldout] + ([num_heldout] if num_heldout else [])
        self.replays = self._make_replays(d, [topology.local_share(n) for n in groups], env_spec)
        self.act_rng = np.random.default_rng(0)
        self.learner = dqn.Learner(
            self.model,
            d,
            self.arch_cfg,
            self.replays,
            1.0,
            topology,
            bool(c.get("parallel") and c.parallel.async_actor),
            step=make_learner_step(self.model, d, self.arch_cfg, self.action_dim, topology),
            act=self._act,
            reward_fn=lambda r: r,
        )

    def _make_replays(self, d, sizes, env_spec):
        """Uniform replays (priority exponent 0) of float action vectors, one per env
        group, ``replay_capacity`` split as DQN's; refused if it does not fit in memory."""
        capacity = self.topology.local_share(d.replay_capacity)
        shape, dtype = env_spec.observation_shape, env_spec.observation_dtype
        need = PrioritizedReplay.estimate_bytes(
            capacity, shape, dtype, sum(sizes), (self.action_dim,), np.float32
        )
        have = host.available_ram_bytes()
        if need > 0.9 * have:
            raise ValueError(
                f"sac.replay_capacity={d.replay_capacity:,} needs about {need / 1e9:.1f} GB "
                f"of replay memory; {have / 1e9:.1f} GB is available"
            )
        return [
            PrioritizedReplay(
                max(capacity * n // sum(sizes), n * (d.n_step + 2)),
                n,
                shape,
                dtype,
                d.n_step,
                d.gamma,
                0.0,
                0.0,
                action_shape=(self.action_dim,),
                action_dtype=np.float32,
            )
            for n in sizes
        ]

    def _act(self, actor, state, inv_temp):
        """One env step of every env; uniform random actions until the training replay
        has seen ``random_steps`` transitions (DrQ's seed steps), then the policy."""
        if self.replays[0].num_added < self.topology.local_share(self.cfg.random_steps):
            n = sum(actor.sizes)
            actions = self.act_rng.uniform(-1.0, 1.0, (n, self.action_dim)).astype(np.float32)
        else:
            actions, _ = actor.act(state.params, state.alphas, inv_temp)
        obs, rewards, dones, fin = actor.step(actions)
        truncated = np.concatenate([e.last_info["truncated"] for e in actor.envs])
        return actions, obs, rewards, dones, fin, truncated

    def start_segment(self, seed: int, segment: int) -> None:
        super().start_segment(seed, segment)
        self.act_rng = np.random.default_rng([seed, segment, 1])

    def learner_programs(self, state) -> dict:
        """``sac_step``: the jitted step with the abstract arguments of one call (a
        replay batch of ``batch_size`` frame stacks and action vectors)."""
        sds, f32, b = jax.ShapeDtypeStruct, jnp.float32, self.learner.batch_size
        frames = sds((b, *self.replays[0].obs_shape), self.replays[0].obs_dtype)
        batch = {"obs": frames, "next_obs": frames, "actions": sds((b, self.action_dim), f32)}
        batch.update({k: sds((b,), f32) for k in dqn.REPLAY_FLOATS})
        held = batch if len(self.replays) > 1 else None
        return {"sac_step": (self.learner.step, (state, batch, held, sds((), f32)))}

    def init_state(self, alphas, sample_obs, key) -> SACState:
        return init_state(
            self.model,
            self.cfg,
            self.arch_cfg,
            alphas,
            sample_obs,
            self.action_dim,
            key,
            self.topology,
        )
