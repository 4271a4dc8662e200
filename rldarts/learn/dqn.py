"""Rainbow-style DQN learner: C51 + double Q + dueling head, n-step returns, prioritized
replay, a periodically copied target network, per-env (Ape-X) epsilon-greedy acting.

Reads top to bottom: acting policies, the loss, the jitted learner step (weights and
alphas through ``rldarts.learn.arch.make_arch_step``, as PPO), then ``run_iteration``, the host
loop that steps the envs, fills the replays and keeps the samples-per-insert ratio.
Settings: reference section 8 (config section ``dqn``).
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rldarts.common import host
from rldarts.env import procgen_scores
from rldarts.learn import arch, async_actor, dqn_losses, parallel
from rldarts.learn.replay import PrioritizedReplay
from rldarts.model import networks

# A replay file of a checkpoint: step, process (absent in files written before
# multi-host replays: process 0's), env group. Temporary files of atomic writes never match.
_REPLAY_FILE = re.compile(r"^replay_(?P<step>\d+)_(?:p(?P<process>\d+)_)?g\d+\.npz$")


class DQNState(NamedTuple):
    params: dict
    alphas: dict
    weight_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    key: jax.Array
    target_params: dict
    target_alphas: dict
    learner_steps: jax.Array

    @property
    def arch_state(self) -> arch.ArchState:
        """What the optimisation steps move."""
        return arch.ArchState(self.params, self.alphas, self.weight_opt_state, self.alpha_opt_state)


def atoms(dqn_cfg) -> jnp.ndarray:
    return jnp.linspace(dqn_cfg.v_min, dqn_cfg.v_max, dqn_cfg.num_atoms)


def make_weight_optimizer(dqn_cfg) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(dqn_cfg.max_grad_norm),
        optax.adam(dqn_cfg.learning_rate, eps=dqn_cfg.adam_eps),
    )


def make_policy(model, dqn_cfg, *group_epsilons):
    """Epsilon-greedy on the expected Q-values; ``group_epsilons[g]`` holds the fixed
    per-env epsilons of env group ``g`` (the actor's ``group``): the training envs, then
    the held-out envs, each with its own Ape-X spread."""
    support = atoms(dqn_cfg)
    group_epsilons = [jnp.asarray(e, jnp.float32) for e in group_epsilons]

    def policy(params, alphas, obs, key, inv_temp, group=0):
        # A sampled supernet (gdas) draws its architecture from a key of its own.
        q = dqn_losses.q_values(
            model.apply(
                params, obs, alphas, inv_temp, rngs=arch.arch_rngs(jax.random.fold_in(key, 1))
            ),
            support,
        )
        eps = jnp.broadcast_to(group_epsilons[group], q.shape[:1])
        return dqn_losses.epsilon_greedy(key, q, eps), {}

    return policy


def init_state(
    model, dqn_cfg, arch_cfg, alphas, sample_obs, key, topology: parallel.Topology | None = None
) -> DQNState:
    key, init_key = jax.random.split(key)
    params = model.init({"params": init_key, **arch.arch_rngs(init_key)}, sample_obs, alphas)
    weight_opt = make_weight_optimizer(dqn_cfg)
    alpha_opt = arch.make_alpha_optimizer(arch_cfg, weight_opt)
    state = DQNState(
        params,
        alphas,
        weight_opt.init(params),
        alpha_opt.init(alphas),
        key,
        params,
        alphas,
        jnp.zeros((), jnp.int32),
    )
    return (topology or parallel.single_device()).replicate(state)


def make_learner_step(model, dqn_cfg, arch_cfg, topology: parallel.Topology | None = None):
    """``step(state, batch, heldout_batch, inv_temp) -> (state, metrics)``, jitted;
    metrics['priorities'] holds the per-sample losses of the training batch. With
    several learner devices the batches arrive sharded along the data axis and the
    state replicated (``rldarts.learn.parallel``): the same step, data-parallel."""
    topology = topology or parallel.single_device()
    weight_opt = make_weight_optimizer(dqn_cfg)
    alpha_opt = arch.make_alpha_optimizer(arch_cfg, weight_opt)
    support = atoms(dqn_cfg)

    def loss_fn(params, alphas, batch, target_params, target_alphas, inv_temp, arch_key):
        # One architecture draw per learner step (gdas), shared by the three passes.
        rngs = arch.arch_rngs(arch_key)
        q_tm1 = model.apply(params, batch["obs"], alphas, inv_temp, rngs=rngs)
        q_t_online = model.apply(params, batch["next_obs"], alphas, inv_temp, rngs=rngs)
        q_t_target = model.apply(
            target_params, batch["next_obs"], target_alphas, inv_temp, rngs=rngs
        )
        per_sample = dqn_losses.categorical_double_q_loss(
            q_tm1,
            batch["actions"],
            batch["rewards"],
            batch["discounts"],
            q_t_target,
            q_t_online,
            support,
        )
        # Importance weights correct the bias of prioritized sampling.
        loss = jnp.mean(batch["weights"] * per_sample)
        return loss, {"priorities": per_sample, "td_loss": jnp.mean(per_sample)}

    @jax.jit
    def step(state: DQNState, batch, heldout_batch, inv_temp):
        batch, heldout_batch = global_importance_weights(
            batch, heldout_batch, rescale=topology.process_count > 1
        )
        key, arch_key = jax.random.split(state.key)
        arch_step = arch.make_arch_step(
            arch_cfg.mode,
            lambda p, a, b: loss_fn(
                p, a, b, state.target_params, state.target_alphas, inv_temp, arch_key
            ),
            weight_opt,
            alpha_opt,
            arch_cfg.get("unrolled_lr", 0.0) or dqn_cfg.learning_rate,
        )
        moved, metrics = arch_step(state.arch_state, batch, heldout_batch)
        steps = state.learner_steps + 1
        target_params = optax.periodic_update(
            moved.params, state.target_params, steps, dqn_cfg.target_update_period
        )
        target_alphas = optax.periodic_update(
            moved.alphas, state.target_alphas, steps, dqn_cfg.target_update_period
        )
        new_state = DQNState(*moved, key, target_params, target_alphas, steps)
        return topology.constrain_replicated(new_state), metrics

    return step


# The float fields of a replay batch (``PrioritizedReplay.sample``), one per sample.
REPLAY_FLOATS = ("rewards", "discounts", "weights", "weight_scale")


def learner_programs(step, batch_size: int, heldout: bool, obs_shape, obs_dtype, state) -> dict:
    """``dqn_step``: the jitted learner ``step`` with the abstract arguments of one call
    (a replay batch as ``PrioritizedReplay.sample`` makes it, without the host-side
    indices): what ``rldarts.run.memory`` compiles and ``benchmarks/export_check.py``
    lowers."""
    sds, f32 = jax.ShapeDtypeStruct, jnp.float32
    frames = sds((batch_size, *obs_shape), obs_dtype)
    batch = {"obs": frames, "next_obs": frames, "actions": sds((batch_size,), jnp.int32)}
    batch.update({k: sds((batch_size,), f32) for k in REPLAY_FLOATS})
    return {"dqn_step": (step, (state, batch, batch if heldout else None, sds((), f32)))}


def global_importance_weights(*batches, rescale: bool = True):
    """Inside the jitted step: the importance weights of each (global) batch divided by
    their max over the whole batch, not over one process's rows.

    Each process samples its rows from its own replay and normalises their weights by
    its own max (``PrioritizedReplay.sample``); ``weight_scale`` carries that max of the
    size-free weight P_p(i)^-beta. The global sampling law is P(i) = P_p(i) / processes
    and (N P(i))^-beta / max_j (N P(j))^-beta = P_p(i)^-beta / max_j P_q(j)^-beta (N and
    the process count cancel), so weights * scale / max(scale) are the weights one
    process holding every replay would use. One process (``rescale`` False) the scale is
    only dropped: scale / max(scale) would be 1.0, but XLA may fuse the product into
    the loss in another order, moving single-process results by an ulp. Batches
    without a scale (tests) pass unchanged."""
    out = []
    for batch in batches:
        if batch is not None and "weight_scale" in batch:
            batch = dict(batch)
            scale = batch.pop("weight_scale")
            if rescale:
                batch["weights"] = batch["weights"] * (scale / jnp.max(scale))
        out.append(batch)
    return out


def make_replays(dqn_cfg, group_sizes, obs_shape, obs_dtype, capacity: int | None = None):
    """One replay per env group (training envs, then held-out envs), ``capacity``
    (default ``dqn.replay_capacity``) split in proportion to the group sizes."""
    total = sum(group_sizes)
    capacity = dqn_cfg.replay_capacity if capacity is None else capacity
    return [
        PrioritizedReplay(
            max(capacity * n // total, n * (dqn_cfg.n_step + 2)),
            n,
            obs_shape,
            obs_dtype,
            dqn_cfg.n_step,
            dqn_cfg.gamma,
            dqn_cfg.priority_exponent,
            dqn_cfg.importance_exponent,
        )
        for n in group_sizes
    ]


class Learner:
    """Host-side bookkeeping around the jitted step: replays, samples-per-insert.

    Shared with SAC (``rldarts.learn.sac``), which passes its own jitted ``step``, its
    ``act`` (random actions before learning starts) and ``reward_fn`` (rewards as they
    are); ``cfg`` is the agent's config section (num_envs, batch_size, min_replay_size,
    samples_per_insert)."""

    def __init__(
        self,
        model,
        dqn_cfg,
        arch_cfg,
        replays,
        reward_scale: float,
        topology: parallel.Topology | None = None,
        async_acting: bool = False,
        *,
        step=None,
        act=None,
        reward_fn=None,
    ):
        self.cfg = dqn_cfg
        self.replays = replays
        self.reward_scale = reward_scale
        self.topology = topology or parallel.single_device()
        # Multi-host: each process learns from its own replay, its share of each batch.
        self.batch_size = self.topology.local_share(dqn_cfg.batch_size)
        self.min_replay_size = self.topology.local_share(dqn_cfg.min_replay_size)
        self.step = step or make_learner_step(model, dqn_cfg, arch_cfg, self.topology)
        if act is not None:
            self.act = act
        if reward_fn is not None:
            self.reward_fn = reward_fn
        # Async: the next env step is taken on the actor thread during this one's
        # learner steps, with the params from before them (rldarts.learn.async_actor).
        self.pipeline = async_actor.Pipeline(self.act) if async_acting else None
        # Samples-per-insert counts inserts from the moment learning starts (Reverb's
        # SampleToInsertRatio, Dopamine): counted from step 0, the learner would run
        # samples_per_insert * min_replay_size / batch_size steps in a row on the first
        # transitions, with no env step and a frozen target in between.
        self.inserted = 0  # transitions added to the training replay while learning
        self.sampled = 0  # transitions sampled by learner steps
        self.rng = np.random.default_rng(0)

    def act(self, actor, state, inv_temp):
        """One env step of every env (DQN: the epsilon-greedy policy), see ``_act``."""
        return _act(actor, state, inv_temp)

    def reward_fn(self, rewards):
        """DQN: rewards divided by the game's max return, clipped to [-1, 1]."""
        return dqn_losses.transform_reward(rewards, self.reward_scale)

    def start_segment(self, seed: int, segment: int) -> None:
        # Sampling RNG per segment: resumed runs sample exactly what straight runs do.
        self.rng = np.random.default_rng([seed, segment])
        # The envs are rebuilt: windows open at the boundary would join two episodes.
        for replay in self.replays:
            replay.close_open_windows()

    def run_iteration(
        self, actor, state: DQNState, inv_temp, num_env_steps: int, next_inv_temp=None
    ):
        """Acts for ``num_env_steps`` (all envs of all processes together) and learns at
        the configured samples-per-insert ratio once the training replay holds
        ``min_replay_size``."""
        finished = [([], []) for _ in actor.envs]
        metrics, lags = [], []
        # Every process steps its share: together they make num_env_steps.
        num_steps = max(1, num_env_steps // (sum(actor.sizes) * self.topology.process_count))
        for t in range(num_steps):
            if self.pipeline is None:
                actions, obs, rewards, dones, fin, truncated = self.act(actor, state, inv_temp)
            else:
                # The next env step: same iteration, or the next one if it continues
                # this env segment (None: the envs stay idle for the checkpoint).
                upcoming = inv_temp if t + 1 < num_steps else next_inv_temp
                prefetch = None if upcoming is None else (actor, state, upcoming)
                (actions, obs, rewards, dones, fin, truncated), lag = self.pipeline.next(
                    (actor, state, inv_temp), prefetch
                )
                lags.append(lag)
            rewards = np.asarray(self.reward_fn(rewards))
            start = 0
            for g, (replay, n) in enumerate(zip(self.replays, actor.sizes)):
                sl = slice(start, start + n)
                trunc = None if truncated is None else truncated[sl]
                replay.add(obs[sl], actions[sl], rewards[sl], dones[sl], trunc)
                finished[g][0].append(fin[g][0])
                finished[g][1].append(fin[g][1])
                start += n
            started, heldout_ready = self._ready()
            if not started:
                continue
            self.inserted += actor.sizes[0]
            state = self._learn(state, inv_temp, heldout_ready, metrics)
        return state, self._summary(state, metrics, lags), finished

    def _ready(self) -> tuple[bool, bool]:
        """(learning runs, the held-out replay has data), the same on every process.

        Every learner step is a collective, so these gates must agree: each process's
        replay size depends on when its episodes end (a done releases up to n_step
        transitions early), so the processes agree on the min of their sizes. One
        process: its own sizes, as before."""
        held = self.replays[1].size if len(self.replays) > 1 else 1
        train, held = self.topology.min_over_processes([self.replays[0].size, held])
        return bool(train >= self.min_replay_size), bool(held > 0)

    def _learn(self, state, inv_temp, heldout_ready: bool, metrics: list):
        """Learner steps until the samples-per-insert ratio is met (the same number on
        every process: ``inserted`` and ``sampled`` move in lockstep)."""
        while self.sampled < self.cfg.samples_per_insert * self.inserted:
            batch = self.replays[0].sample(self.batch_size, self.rng)
            if len(self.replays) > 1 and not heldout_ready:
                break  # alternating: wait until the held-out replay has data
            held = (
                self.replays[1].sample(self.batch_size, self.rng) if len(self.replays) > 1 else None
            )
            state, m = self.step(
                state,
                self.topology.shard_batch(_device(batch)),
                self.topology.shard_batch(_device(held)),
                inv_temp,
            )
            if "priorities" in m:  # SAC samples uniformly
                self.replays[0].update_priorities(
                    batch["indices"], self.topology.local_rows(m.pop("priorities"))
                )
            metrics.append(m)
            self.sampled += self.batch_size
        return state

    def _summary(self, state, metrics: list, lags: list) -> dict:
        out = {
            "replay_size": self.replays[0].size,
            "replay_memory_gb": sum(r.memory_bytes() for r in self.replays) / 1e9,
            "learner_steps": int(self.topology.to_host(state.learner_steps)),
        }
        if metrics:
            out.update(
                {
                    k: float(v)
                    for k, v in self.topology.to_host(
                        jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *metrics)
                    ).items()
                }
            )
        if lags:
            out["policy_lag"] = float(np.mean(lags))
        return out

    def state_dict(self) -> dict:
        return {"inserted": self.inserted, "sampled": self.sampled}

    def load_state_dict(self, state: dict) -> None:
        self.inserted, self.sampled = state["inserted"], state["sampled"]


def _act(actor, state, inv_temp):
    """One env step of every env: (actions, obs before, rewards, dones, finished,
    truncated: None, every done is terminal)."""
    actions, _ = actor.act(state.params, state.alphas, inv_temp)
    obs, rewards, dones, fin = actor.step(actions)
    return actions, obs, rewards, dones, fin, None


def _device(batch):
    if batch is None:
        return None
    return {k: v for k, v in batch.items() if k != "indices"}


class Agent:
    """DQN as the experiment driver sees it (``rldarts.run.experiment``)."""

    normalize_reward = False  # rewards are scaled by the game's max return instead
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
        env_spec=None,  # rldarts.env.families.EnvSpec: the replay's frame shape and dtype
        obs_shape=(64, 64, 3),  # without env_spec (tests)
        obs_dtype=np.uint8,
    ):
        if env_spec is not None:
            obs_shape, obs_dtype = env_spec.observation_shape, env_spec.observation_dtype
        d = self.cfg = c.dqn
        self.topology = topology = topology or parallel.single_device()
        self.model = networks.Agent(
            torso, networks.C51DuelingHead(num_actions, d.num_atoms, d.hidden)
        )
        self.num_envs = d.num_envs
        self.steps_per_iteration = max(1, d.iteration_env_steps // d.num_envs) * d.num_envs
        self.arch_cfg = c.arch.copy_and_resolve_references()
        self.arch_cfg.mode = mode
        # Multi-host: each process holds the replay of its own envs.
        capacity = topology.local_share(d.replay_capacity)
        need = PrioritizedReplay.estimate_bytes(
            capacity, obs_shape, obs_dtype, topology.local_share(d.num_envs)
        )
        have = host.available_ram_bytes()
        if need > 0.9 * have:
            raise ValueError(
                f"dqn.replay_capacity={d.replay_capacity:,} needs about "
                f"{need / 1e9:.1f} GB of replay memory; {have / 1e9:.1f} GB "
                "is available"
            )
        # Each group its own Ape-X spread: spread over all columns, the held-out envs
        # (the last columns) would act almost greedily.
        # A process takes its own slice of each group's spread.
        groups = [d.num_envs - num_heldout] + ([num_heldout] if num_heldout else [])
        p, share = topology.process_index, topology.local_share
        self.policy = make_policy(
            self.model,
            d,
            *[
                dqn_losses.apex_epsilons(n, d.epsilon_base, d.epsilon_alpha)[
                    p * share(n) : (p + 1) * share(n)
                ]
                for n in groups
            ],
        )
        self.eval_policy = make_policy(self.model, d, [d.eval_epsilon])
        self.replays = make_replays(d, [share(n) for n in groups], obs_shape, obs_dtype, capacity)
        scale = d.reward_max_return or procgen_scores.max_return(c.env_name)
        self.learner = Learner(
            self.model,
            d,
            self.arch_cfg,
            self.replays,
            scale,
            topology,
            bool(c.get("parallel") and c.parallel.async_actor),
        )

    def init_state(self, alphas, sample_obs, key) -> DQNState:
        return init_state(
            self.model, self.cfg, self.arch_cfg, alphas, sample_obs, key, self.topology
        )

    def learner_programs(self, state) -> dict:
        return learner_programs(
            self.learner.step,
            self.learner.batch_size,
            len(self.replays) > 1,
            self.replays[0].obs_shape,
            self.replays[0].obs_dtype,
            state,
        )

    def run_iteration(self, actor, state, inv_temp, next_inv_temp=None):
        return self.learner.run_iteration(
            actor, state, inv_temp, self.steps_per_iteration, next_inv_temp
        )

    def close(self) -> None:
        if self.learner.pipeline is not None:
            self.learner.pipeline.close()

    def start_segment(self, seed: int, segment: int) -> None:
        self.learner.start_segment(seed, segment)

    def state_dict(self) -> dict:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state)

    def _replay_path(self, directory, step, group, process=None):
        """One file per process and env group: every process saves, prunes and loads
        only its own (``process`` None: this process)."""
        process = self.topology.process_index if process is None else process
        return os.path.join(directory, f"replay_{step}_p{process}_g{group}.npz")

    def save_extra(self, directory: str, step: int) -> None:
        """The replays, tagged with the checkpoint step (written before the checkpoint)."""
        os.makedirs(directory, exist_ok=True)
        for g, replay in enumerate(self.replays):
            replay.save(self._replay_path(directory, step, g))

    def prune_extra(self, directory: str, kept_steps) -> None:
        """Removes this process's replays of checkpoints that no longer exist (another
        process's files are its own to remove: two removers race). Process 0 also owns
        the files named without a process (before multi-host replays)."""
        kept = {int(s) for s in kept_steps}
        me = self.topology.process_index
        for name in os.listdir(directory):
            m = _REPLAY_FILE.match(name)
            if m and int(m["step"]) not in kept and int(m["process"] or 0) == me:
                os.remove(os.path.join(directory, name))

    def load_extra(self, directory: str, step: int) -> str:
        """Loads this process's replays; the note (for process 0's log) names every
        process whose replays are missing and refill from empty."""
        paths = [self._replay_path(directory, step, g) for g in range(len(self.replays))]
        legacy = [os.path.join(directory, f"replay_{step}_g{g}.npz") for g in range(len(paths))]
        if self.topology.process_count == 1 and not all(map(os.path.exists, paths)):
            paths = legacy  # a checkpoint saved before replay files named their process
        found = all(os.path.exists(p) for p in paths)
        if found:
            for replay, path in zip(self.replays, paths):
                replay.load(path)
        missing = [p for p, ok in enumerate(self.topology.allgather_json(found)) if not ok]
        if not missing:
            return ""
        who = "" if self.topology.process_count == 1 else f" of process(es) {missing}"
        return (
            f"no replay{who} saved with checkpoint {step}: it refills from empty "
            f"({self.cfg.min_replay_size:,} transitions before learning)"
        )
