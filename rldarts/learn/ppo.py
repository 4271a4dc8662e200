"""PPO learner (Schulman et al. 2017; Procgen settings of Cobbe et al. 2020).

Reads top to bottom: the acting policy, the loss, then ``make_update``: a whole rollout
(time-major, ``(T, N, ...)``) -> GAE (a reverse ``lax.scan``) -> ``update_epochs`` x
``num_minibatches`` optimisation steps on shuffled minibatches. Weights and alphas move
through ``rldarts.learn.arch.make_arch_step``, so the joint, alternating, unrolled and frozen
architecture modes are the same code for every agent. How the loops run (one jitted
``lax.scan`` or a host loop of jitted steps, microbatched gradients on CPU, a data-
parallel mesh of devices) sits behind one seam, ``rldarts.learn.ppo_loops``; every
choice there makes the same update. ``Agent`` adds acting, optionally on an actor
thread one update behind (``rldarts.learn.async_actor``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rldarts.learn import arch, async_actor, parallel, ppo_loops, ppo_losses
from rldarts.learn.ppo_loops import microbatch_size, update_loop  # noqa: F401 (public)
from rldarts.model import networks


class PPOState(NamedTuple):
    params: dict
    alphas: dict
    weight_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    key: jax.Array

    @property
    def arch_state(self) -> arch.ArchState:
        """What the optimisation steps move (everything but the RNG key)."""
        return arch.ArchState(self.params, self.alphas, self.weight_opt_state, self.alpha_opt_state)


def make_weight_optimizer(ppo_cfg, num_updates: int) -> optax.GradientTransformation:
    """Adam(eps 1e-5) after global grad-norm clipping; lr optionally annealed to 0."""
    lr = (
        optax.linear_schedule(ppo_cfg.learning_rate, 0.0, num_updates)
        if ppo_cfg.anneal_lr
        else ppo_cfg.learning_rate
    )
    return optax.chain(
        optax.clip_by_global_norm(ppo_cfg.max_grad_norm), optax.adam(lr, eps=ppo_cfg.adam_eps)
    )


def make_policy(model):
    """Stochastic acting: sample from the policy logits; extras for the learner. Every
    env group acts alike (``group`` is the actor's group index)."""

    def policy(params, alphas, obs, key, inv_temp, group=0):
        del group
        # A sampled supernet (gdas) draws its architecture per forward pass from a key
        # of its own, so the action stream is the same for every method.
        logits, value = model.apply(
            params, obs, alphas, inv_temp, rngs=arch.arch_rngs(jax.random.fold_in(key, 1))
        )
        actions = jax.random.categorical(key, logits)
        log_probs = ppo_losses.categorical_log_prob(logits, actions)
        return actions, {"log_probs": log_probs, "values": value}

    return policy


def make_loss(model, ppo_cfg):
    """``loss(params, alphas, minibatch, inv_temp, arch_key) -> (loss, metrics)``; the
    minibatch's advantages are already normalised (over the whole minibatch)."""

    def loss_fn(params, alphas, batch, inv_temp, arch_key=None):
        logits, value = model.apply(
            params, batch["obs"], alphas, inv_temp, rngs=arch.arch_rngs(arch_key)
        )
        return ppo_losses.ppo_loss(
            logits,
            value,
            batch,
            ppo_cfg.clip_eps,
            ppo_cfg.vf_coef,
            ppo_cfg.ent_coef,
            ppo_cfg.clip_value_loss,
            norm_adv=False,
        )

    return loss_fn


def init_state(
    model,
    ppo_cfg,
    arch_cfg,
    alphas,
    sample_obs,
    key,
    num_updates: int,
    topology: parallel.Topology | None = None,
):
    key, init_key = jax.random.split(key)
    params = model.init({"params": init_key, **arch.arch_rngs(init_key)}, sample_obs, alphas)
    weight_opt = make_weight_optimizer(ppo_cfg, num_updates)
    alpha_opt = arch.make_alpha_optimizer(arch_cfg, weight_opt)
    state = PPOState(params, alphas, weight_opt.init(params), alpha_opt.init(alphas), key)
    return (topology or parallel.single_device()).replicate(state)


@dataclasses.dataclass(frozen=True)
class UpdateSpec:
    """What a PPO update is built from, made once per run (``update_spec``): the loss,
    the two configs, the two optimizers, the env split and the devices. Every stage
    of the update and the loop seam (``ppo_loops``) read it; nothing relays its parts.
    """

    loss_fn: Callable
    ppo: Any  # config section ppo
    arch: Any  # config section arch (mode resolved)
    weight_opt: optax.GradientTransformation
    alpha_opt: optax.GradientTransformation
    num_train_envs: int
    num_heldout_envs: int
    minibatch_sizes: tuple[int, int]  # training, held-out samples (held-out may be 0)
    batch_statistics: bool  # the torso normalises over its batch (DARTS cells)
    topology: parallel.Topology


def minibatch_sizes(ppo_cfg, num_train_envs: int, num_heldout_envs: int) -> tuple[int, int]:
    """The one check that ``ppo.num_minibatches`` divides each env group's samples."""
    nmb, out = ppo_cfg.num_minibatches, []
    for name, envs in (("training", num_train_envs), ("held-out", num_heldout_envs)):
        n = envs * ppo_cfg.num_steps
        if n % nmb:
            raise ValueError(
                f"ppo.num_minibatches={nmb} does not divide the {n} {name} "
                "samples of a rollout (num_envs x num_steps)"
            )
        out.append(n // nmb)
    return tuple(out)


def update_spec(
    model,
    ppo_cfg,
    arch_cfg,
    num_envs: int,
    num_heldout_envs: int,
    num_updates: int,
    batch_statistics: bool = False,
    topology: parallel.Topology | None = None,
    weight_opt: optax.GradientTransformation | None = None,
    alpha_opt: optax.GradientTransformation | None = None,
    sizes: Sequence[int] | None = None,
) -> UpdateSpec:
    """The spec of a run's updates; the optimizers default to PPO's (``num_updates``
    sets the learning-rate anneal), the minibatch sizes to the env split's."""
    weight_opt = weight_opt or make_weight_optimizer(ppo_cfg, num_updates)
    return UpdateSpec(
        loss_fn=make_loss(model, ppo_cfg),
        ppo=ppo_cfg,
        arch=arch_cfg,
        weight_opt=weight_opt,
        alpha_opt=alpha_opt or arch.make_alpha_optimizer(arch_cfg, weight_opt),
        num_train_envs=num_envs - num_heldout_envs,
        num_heldout_envs=num_heldout_envs,
        minibatch_sizes=tuple(sizes)
        if sizes is not None
        else minibatch_sizes(ppo_cfg, num_envs - num_heldout_envs, num_heldout_envs),
        batch_statistics=batch_statistics,
        topology=topology or parallel.single_device(),
    )


def make_minibatch_step(
    model,
    ppo_cfg,
    arch_cfg,
    weight_opt,
    alpha_opt,
    minibatch_sizes,
    loop: str = "host",
    batch_statistics: bool = False,
    topology=None,
):
    """One optimisation step on a normalised minibatch of ``minibatch_sizes`` (training,
    held-out) samples: ``step(arch_state, train_mb, heldout_mb, inv_temp, arch_key)``
    (``ppo_loops.make_minibatch_step`` with the PPO loss)."""
    # A lone step: no rollout to split into env groups, the sizes are given.
    spec = update_spec(
        model,
        ppo_cfg,
        arch_cfg,
        0,
        0,
        1,
        batch_statistics,
        topology,
        weight_opt,
        alpha_opt,
        sizes=minibatch_sizes,
    )
    return ppo_loops.make_minibatch_step(spec, loop)


def make_update(
    model,
    ppo_cfg,
    arch_cfg,
    num_envs: int,
    num_heldout_envs: int,
    num_updates: int,
    batch_statistics: bool = False,
    topology: parallel.Topology | None = None,
):
    """``update(state, rollout, inv_temp) -> (state, metrics)`` for ``update_spec(...)``
    of these arguments (see ``build_update``)."""
    return build_update(
        update_spec(
            model,
            ppo_cfg,
            arch_cfg,
            num_envs,
            num_heldout_envs,
            num_updates,
            batch_statistics,
            topology,
        )
    )


def build_update(spec: UpdateSpec):
    """Returns ``update(state, rollout, inv_temp) -> (state, metrics)``: GAE over the
    rollout, then ``update_epochs`` x ``num_minibatches`` arch steps on shuffled
    minibatches.

    ``rollout``: 'obs' (T, N, ...), 'actions', 'log_probs', 'values', 'rewards',
    'dones' (T, N) and 'last_values' (N,), the bootstrap V(s_T), host arrays of this
    process's envs (``collect_rollout``; other keys are ignored). The last
    ``num_heldout_envs`` columns are held-out data for the alternating and unrolled
    alpha steps. Where and how the loops run (one jitted scan or a host loop;
    microbatches; devices) is ``ppo_loops``'s business.
    """
    loop = ppo_loops.make_loop(spec)
    return loop.compile(_update(spec, loop), functools.partial(place, spec))


def _update(spec: UpdateSpec, loop: ppo_loops.Loop):
    """``update(state, placed_groups, inv_temp)``: the algorithm, in the given loop."""
    prepare_samples = functools.partial(prepare, spec)
    take_minibatches = functools.partial(minibatches, spec)

    def update(state: PPOState, groups, inv_temp):
        samples, explained, key, schedule = loop.stage(prepare_samples)(state, groups, inv_temp)
        arch_state, history = loop.steps(
            state.arch_state, take_minibatches, samples, schedule, inv_temp
        )
        metrics = jax.tree.map(lambda x: jnp.mean(x, axis=0), history)
        # approx_kl_first: the KL of the first minibatch, before any weight step of
        # this update. Synchronous acting: the params are the acting ones, so it
        # measures only the recomputation of the behaviour log-probabilities (batch
        # statistics over another batch; gdas: another architecture draw; alternating:
        # the alpha step that came first). Async actor (policy_lag 1): the data were
        # collected with the params before the previous update, so it also holds that
        # whole update's policy change.
        metrics.update(explained_variance=explained, approx_kl_first=history["approx_kl"][0])
        return PPOState(*arch_state, key), metrics

    return update


def learner_programs(spec: UpdateSpec, state, obs_shape, obs_dtype) -> dict:
    """The learner's programs, jitted, with the abstract arguments of one call
    (``jax.ShapeDtypeStruct``s; ``state`` may be abstract too): ``ppo_step``, one step
    on whole minibatches (the accelerators' step, and the DARTS torsos' on every
    backend), and ``ppo_update``, the whole update as one ``lax.scan``. What
    ``rldarts.run.memory`` compiles and ``benchmarks/export_check.py`` lowers."""
    sds, f32 = jax.ShapeDtypeStruct, jnp.float32
    key = jax.eval_shape(lambda: jax.random.PRNGKey(0))

    def minibatch(n):
        floats = ("log_probs", "values", "advantages", "returns")
        mb = {"obs": sds((n, *obs_shape), obs_dtype), "actions": sds((n,), jnp.int32)}
        return None if not n else {**mb, **{k: sds((n,), f32) for k in floats}}

    def group(envs):
        t, obs = spec.ppo.num_steps, sds((spec.ppo.num_steps, envs, *obs_shape), obs_dtype)
        steps = {"obs": obs, "actions": sds((t, envs), jnp.int32), "dones": sds((t, envs), f32)}
        steps.update({k: sds((t, envs), f32) for k in ("log_probs", "values", "rewards")})
        return None if not envs else (steps, sds((envs,), f32))

    train, held = spec.minibatch_sizes
    scan = ppo_loops.Loop("scan", ppo_loops.make_minibatch_step(spec, "scan"), spec.topology)
    groups = (group(spec.num_train_envs), group(spec.num_heldout_envs))
    return {
        "ppo_step": (
            jax.jit(ppo_loops.make_minibatch_step(spec, "scan")),
            (state.arch_state, minibatch(train), minibatch(held), sds((), f32), key),
        ),
        "ppo_update": (jax.jit(_update(spec, scan)), (state, groups, sds((), f32))),
    }


def prepare(spec: UpdateSpec, state: PPOState, groups, inv_temp):
    """GAE over the rollout, flattened into training and held-out sample sets; the new
    RNG key; per step, the shuffled minibatch indices and the architecture key."""
    rollout = _join_groups(groups)
    key, perm_key = jax.random.split(state.key)
    advantages, returns = ppo_losses.gae_advantages(
        rollout["rewards"],
        rollout["values"],
        rollout["dones"],
        rollout["last_values"],
        spec.ppo.gamma,
        spec.ppo.gae_lambda,
    )
    data = {k: rollout[k] for k in ("obs", "actions", "log_probs", "values")}
    data.update(advantages=advantages, returns=returns)
    flat = lambda tree: jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)
    split = spec.num_train_envs
    # Every device holds the sample set and gathers its shard of each minibatch.
    train = spec.topology.constrain_replicated(flat(jax.tree.map(lambda x: x[:, :split], data)))
    heldout = spec.topology.constrain_replicated(flat(jax.tree.map(lambda x: x[:, split:], data)))
    # Explained variance of the value targets: a quick health check of the critic.
    explained = 1.0 - jnp.var(returns - rollout["values"]) / (jnp.var(returns) + 1e-8)
    schedule = (*permutations(spec, perm_key), arch_keys(spec, perm_key))
    return (train, heldout), explained, key, schedule


def permutations(spec: UpdateSpec, key):
    """Per epoch: shuffled minibatch indices, (epochs, num_minibatches, size), for the
    training and the held-out samples."""
    nmb, epochs = spec.ppo.num_minibatches, spec.ppo.update_epochs

    def one(key, size):
        return jax.random.permutation(key, size).reshape(nmb, size // nmb)

    keys = jax.random.split(key, (epochs, 2))
    n_train = spec.num_train_envs * spec.ppo.num_steps
    n_held = max(spec.num_heldout_envs * spec.ppo.num_steps, nmb)
    return (
        jax.vmap(lambda k: one(k, n_train))(keys[:, 0]),
        jax.vmap(lambda k: one(k, n_held))(keys[:, 1]),
    )


def arch_keys(spec: UpdateSpec, key):
    """Per step, the key a sampled supernet draws its architecture from (shared by the
    step's held-out and training batches), (epochs, num_minibatches) keys."""
    shape = (spec.ppo.update_epochs, spec.ppo.num_minibatches)
    return jax.random.split(jax.random.fold_in(key, 1), shape)


def minibatches(spec: UpdateSpec, samples, idx, held_idx):
    """One training (and held-out) minibatch, laid out over the learner devices;
    advantages normalised over the whole minibatch (CleanRL) when ``ppo.norm_adv``."""

    def take(data, i):
        mb = jax.tree.map(lambda x: x[i], data)
        if spec.ppo.norm_adv:
            mb["advantages"] = ppo_losses.normalize_advantages(mb["advantages"])
        return spec.topology.constrain_batch(mb)

    train, heldout = samples
    return take(train, idx), (take(heldout, held_idx) if spec.num_heldout_envs else None)


def place(spec: UpdateSpec, rollout):
    """This process's env columns -> the training and held-out groups, each sharded
    along its env axis over the learner devices (global arrays over processes)."""
    n_train = spec.topology.local_share(spec.num_train_envs)
    return tuple(
        None
        if group is None
        else (spec.topology.shard_batch(group[0], axis=1), spec.topology.shard_batch(group[1]))
        for group in _split_groups(rollout, n_train, spec.num_heldout_envs > 0)
    )


STEP_KEYS = ("obs", "actions", "log_probs", "values", "rewards", "dones")


def _split_groups(rollout, num_train: int, heldout: bool):
    """(steps (T, N, ...), last_values (N,)) of the training columns and of the
    held-out ones (None without held-out envs)."""
    group = lambda cols: (
        {k: rollout[k][:, cols] for k in STEP_KEYS},
        np.asarray(rollout["last_values"])[cols],
    )
    return group(slice(0, num_train)), (group(slice(num_train, None)) if heldout else None)


def _join_groups(groups) -> dict:
    """The inverse of ``_split_groups`` (inside jit): one rollout, held-out columns last."""
    (steps, last_values), held = groups
    if held is not None:
        steps = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=1), steps, held[0])
        last_values = jnp.concatenate([last_values, held[1]])
    return dict(steps, last_values=last_values)


# Folded into the actor's key (not split off it) for the bootstrap forward pass, so the
# actions of every step are those of a run without it.
_BOOTSTRAP_KEY = 2


def collect_rollout(actor, state, num_steps: int, inv_temp, loop: str = "host"):
    """num_steps of acting with ``state``'s params; time-major arrays for ``update``.
    ``loop`` (``ppo_loops.rollout_loop``): ``host`` steps the envs from a Python loop;
    ``scan`` traces acting and env steps into one jitted scan (``Actor.act_scan``,
    JAX-native envs); the same rollout either way.

    The bootstrap V(s_T) ('last_values') is computed here, by the params that acted and
    one forward pass per env group, as every V(s_t) was: with batch statistics a joint
    pass over both groups would give other values, and the async actor's params lag
    the learner's by one update (Cleanba collects num_steps + 1 values likewise)."""
    if loop == "scan":
        o, a, extras, r, d, finished = actor.act_scan(
            state.params, state.alphas, inv_temp, num_steps
        )
        rollout = {"obs": o, "actions": a, "rewards": r, "dones": d}
        rollout["log_probs"] = np.asarray(extras["log_probs"])
        rollout["values"] = np.asarray(extras["values"])
        rollout["last_values"] = _bootstrap_values(actor, state, inv_temp)
        return rollout, finished
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
    rollout = {
        "obs": np.stack(obs),
        "actions": np.stack(actions),
        "log_probs": np.stack(jax.device_get(log_probs)),
        "values": np.stack(jax.device_get(values)),
        "rewards": np.stack(rewards),
        "dones": np.stack(dones),
        "last_values": _bootstrap_values(actor, state, inv_temp),
    }
    return rollout, finished


def _bootstrap_values(actor, state, inv_temp) -> np.ndarray:
    """V(s_T) of every column: the policy's values on the actor's current observations."""
    key = jax.random.fold_in(actor.key, _BOOTSTRAP_KEY)
    _, extras = actor.act(state.params, state.alphas, inv_temp, key=key)
    return np.asarray(jax.device_get(extras["values"]))


class Agent:
    """PPO as the experiment driver sees it (``rldarts.learn.agents.AgentInterface``)."""

    continuous_actions = False

    def __init__(
        self,
        c,
        torso,
        num_actions: int,
        mode: str,
        num_heldout: int,
        total_env_steps: int,
        topology: parallel.Topology | None = None,
        env_spec=None,  # rldarts.env.families.EnvSpec (only for learner_programs)
    ):
        self.cfg = c.ppo
        self.topology = topology or parallel.single_device()
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
        self.env_spec = env_spec
        self._spec = update_spec(
            self.model,
            c.ppo,
            self.arch_cfg,
            self.num_envs,
            num_heldout,
            self.num_updates,
            networks.uses_batch_statistics(c.network),
            self.topology,
        )
        self._update = build_update(self._spec)
        self._rollout_loop = None  # resolved at the first collection
        self._pipeline = (
            async_actor.Pipeline(self._collect)
            if c.get("parallel") and c.parallel.async_actor
            else None
        )

    def init_state(self, alphas, sample_obs, key) -> PPOState:
        return init_state(
            self.model,
            self.cfg,
            self.arch_cfg,
            alphas,
            sample_obs,
            key,
            self.num_updates,
            self.topology,
        )

    def learner_programs(self, state) -> dict:
        return learner_programs(
            self._spec, state, self.env_spec.observation_shape, self.env_spec.observation_dtype
        )

    def _collect(self, actor, state, inv_temp):
        if self._rollout_loop is None:  # the actor's envs decide what is possible
            self._rollout_loop = ppo_loops.rollout_loop(
                self.cfg.rollout_loop, actor.steps_on_device
            )
        return collect_rollout(actor, state, self.cfg.num_steps, inv_temp, self._rollout_loop)

    def run_iteration(self, actor, state, inv_temp, next_inv_temp=None):
        """Collects a rollout and updates on it. With the async actor, the rollout was
        collected during the previous update (one update behind), and the next one is
        started now, before this update, unless ``next_inv_temp`` is None (the next
        iteration starts a new env segment, or there is none)."""
        if self._pipeline is None:
            (rollout, finished), lag = self._collect(actor, state, inv_temp), 0
        else:
            prefetch = None if next_inv_temp is None else (actor, state, next_inv_temp)
            (rollout, finished), lag = self._pipeline.next((actor, state, inv_temp), prefetch)
        state, metrics = self._update(state, rollout, inv_temp)
        metrics = {k: float(v) for k, v in self.topology.to_host(metrics).items()}
        if self._pipeline is not None:
            metrics["policy_lag"] = float(lag)
        return state, metrics, finished

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()

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
