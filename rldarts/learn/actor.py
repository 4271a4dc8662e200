"""The actor shared by every agent: host-stepped envs driven by a jitted policy.

The supernet itself acts: the policy is a pure function
``policy(params, alphas, obs, key, inverse_temperature, group=0) -> (actions, extras)``
(extras: what the learner needs, e.g. log-probs and values for PPO), jitted once per
group. Environments are stepped on the host (EnvPool's in-jit step is not used: it
aborts on GPU with recent JAX).

The actor may drive several env groups whose columns are concatenated: the training
envs and, for alternating architecture updates, envs playing held-out levels; each
keeps its own episode statistics and reward normaliser. Each group acts in its own
forward pass: the DARTS cells normalise with batch statistics, and the learner never
mixes training and held-out samples in a batch, so acting must not either (otherwise
the behaviour log-probabilities could not be reproduced at update time).

Segments: EnvPool's simulator state cannot be checkpointed, so a run is cut into
segments at its checkpoints. Each segment builds fresh envs seeded by
``(seed, segment)``; only the reward normalisers' statistics and the RNG key carry
over. An interrupted run resumed from a checkpoint therefore replays exactly what the
uninterrupted run does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rldarts.env.training_env import TrainingEnv
from rldarts.learn import parallel

EnvFactory = Callable[[int], Sequence[TrainingEnv]]  # segment index -> env groups


class Actor:
    def __init__(
        self,
        env_factory: EnvFactory,
        policy: Callable,
        key: jax.Array,
        topology: parallel.Topology | None = None,
    ):
        self._env_factory = env_factory
        self.policy = jax.jit(policy, static_argnames="group")
        self.key = key
        # Devices: the env batch of each forward pass is sharded over the actor's
        # devices; the learner's params are copied there once per new params.
        self.topology = topology or parallel.single_device()
        self._placed = (None, None)  # (learner params object, its copy on the actor)
        self.envs: list[TrainingEnv] = []
        self.obs = None
        self._norm_stats: list | None = None
        self._scans: dict = {}  # (num_steps, group sizes) -> the jitted rollout scan

    @property
    def sizes(self) -> list[int]:
        return [e.num_envs for e in self.envs]

    def start_segment(self, segment: int) -> None:
        """Fresh envs for this segment; reward-normaliser statistics carry over."""
        if self.envs:
            self._norm_stats = self._normalizer_stats()
            self.close()
        self.envs = list(self._env_factory(segment))
        self.obs = np.concatenate([e.reset() for e in self.envs])
        if self._norm_stats is not None:
            for env, stats in zip(self.envs, self._norm_stats):
                if env.normalizer is not None and stats is not None:
                    env.normalizer.rms.load_state_dict(stats)

    def act(self, params, alphas, inv_temp, key=None):
        """Actions for every column, one policy call per env group; extras concatenated
        in column order. ``key``: act with it and leave the actor's own key stream as
        it is (a look at the current observations, e.g. PPO's bootstrap values, that
        must not shift the actions of later steps)."""
        if key is None:
            self.key, sub = jax.random.split(self.key)
        else:
            sub = key
        keys = _group_keys(sub, len(self.envs))
        params, alphas = self._on_actor(params, alphas)
        outs, start = [], 0
        for group, (n, key) in enumerate(zip(self.sizes, keys)):
            obs = self.topology.place_obs(self.obs[start : start + n])
            outs.append(self.policy(params, alphas, obs, key, inv_temp, group=group))
            start += n
        if len(outs) == 1:
            actions, extras = outs[0]
            return np.asarray(actions), extras
        actions = np.concatenate([np.asarray(a) for a, _ in outs])
        extras = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[e for _, e in outs])
        return actions, extras

    def _on_actor(self, params, alphas):
        if self.topology.trivial:
            return params, alphas
        if self._placed[0] is not params:
            self._placed = (params, self.topology.to_actor((params, alphas)))
        return self._placed[1]

    def step(self, actions: np.ndarray):
        """Steps every group. Returns (obs_before, rewards, dones, finished) where
        ``finished[g]`` = (returns, lengths) of group g's episodes that ended now."""
        obs_before = self.obs
        out, rewards, dones, finished = [], [], [], []
        start = 0
        for env in self.envs:
            o, r, d, f_ret, f_len = env.step(actions[start : start + env.num_envs])
            out.append(o)
            rewards.append(r)
            dones.append(d)
            finished.append((f_ret, f_len))
            start += env.num_envs
        self.obs = np.concatenate(out)
        return obs_before, np.concatenate(rewards), np.concatenate(dones), finished

    @property
    def steps_on_device(self) -> bool:
        """Whether ``act_scan`` can run: every env group JAX-native, one actor device."""
        # getattr: an env group need not wrap a VecEnv (TrainingEnv-like test doubles).
        device_step = lambda e: getattr(getattr(e, "venv", None), "device_step", None)
        return self.topology.trivial and all(device_step(e) is not None for e in self.envs)

    def act_scan(self, params, alphas, inv_temp, num_steps: int):
        """``num_steps`` of ``act`` then ``step`` as one jitted ``lax.scan`` (JAX-native
        envs, no host round trip per step): the same key stream, actions and env steps
        as the host loop. Episode statistics and reward normalisation (host state) then
        run step by step on the host, as ``step`` runs them. Returns time-major
        (obs_before, actions, extras, rewards, dones) and ``finished[g]`` = per step
        (returns, lengths) of group g's episodes that ended, as the host loop collects."""
        if not self.steps_on_device:
            raise ValueError("act_scan needs JAX-native envs on one actor device")
        k = (num_steps, tuple(self.sizes))
        if k not in self._scans:
            self._scans[k] = jax.jit(self._rollout_scan(num_steps))
        carries = tuple(e.venv.device_carry for e in self.envs)
        self.key, carries, obs, out = self._scans[k](
            params, alphas, inv_temp, self.key, carries, jnp.asarray(self.obs)
        )
        for env, carry in zip(self.envs, carries):
            env.venv.device_carry = carry
        self.obs = np.asarray(obs)
        obs_before, actions, extras, raw, dones = out
        raw, dones = np.asarray(raw), np.asarray(dones)
        rewards, finished = np.empty_like(raw), [([], []) for _ in self.envs]
        for t in range(num_steps):
            start = 0
            for env, (returns, lengths) in zip(self.envs, finished):
                cols = slice(start, start + env.num_envs)
                rewards[t, cols], _, f_ret, f_len = env.account(raw[t, cols], dones[t, cols])
                returns.append(f_ret)
                lengths.append(f_len)
                start += env.num_envs
        return np.asarray(obs_before), np.asarray(actions), extras, rewards, dones, finished

    def _rollout_scan(self, num_steps: int):
        """The traced loop of ``act_scan``: per step the key split of ``act``, one policy
        pass per env group, each group's pure env step."""
        sizes = self.sizes
        env_steps = [e.venv.device_step for e in self.envs]
        starts = np.cumsum([0, *sizes])

        def rollout(params, alphas, inv_temp, key, carries, obs):
            def one_step(carry, _):
                key, carries, obs = carry
                key, sub = jax.random.split(key)
                keys = _group_keys(sub, len(sizes))  # as act: the same key stream
                outs = [
                    self.policy(params, alphas, obs[a:b], k, inv_temp, group=g)
                    for g, (a, b, k) in enumerate(zip(starts[:-1], starts[1:], keys))
                ]
                actions = jnp.concatenate([a for a, _ in outs])
                extras = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[e for _, e in outs])
                stepped = [
                    step(c, actions[a:b])
                    for step, c, a, b in zip(env_steps, carries, starts[:-1], starts[1:])
                ]
                carries = tuple(c for c, _ in stepped)
                new_obs, rewards, dones = (
                    jnp.concatenate([o[i] for _, o in stepped]) for i in range(3)
                )
                return (key, carries, new_obs), (obs, actions, extras, rewards, dones)

            (key, carries, obs), out = jax.lax.scan(
                one_step, (key, carries, obs), None, length=num_steps
            )
            return key, carries, obs, out

        return rollout

    def _normalizer_stats(self) -> list:
        return [
            None
            if e.normalizer is None
            else {k: np.asarray(v).tolist() for k, v in e.normalizer.rms.state_dict().items()}
            for e in self.envs
        ]

    def state_dict(self) -> dict:
        """JSON-able: the RNG key and the reward-normaliser statistics."""
        return {"key": np.asarray(self.key).tolist(), "normalizers": self._normalizer_stats()}

    def load_state_dict(self, state: dict) -> None:
        """Call before ``start_segment`` of the resumed segment."""
        self.key = jnp.asarray(np.asarray(state["key"], np.uint32))
        self._norm_stats = state["normalizers"]

    def close(self):
        for e in self.envs:
            e.close()
        self.envs = []


def _group_keys(key, num_groups: int) -> list:
    """One step's action key per env group (``act`` and ``act_scan`` share it, so both
    paths draw the same actions)."""
    return [key] if num_groups == 1 else list(jax.random.split(key, num_groups))
