"""MinAtar (Young & Tian 2019) as gymnax JAX envs behind the host ``VecEnv`` interface.

Env names ``minatar/<game>`` (``GAMES``); observations are the games' binary
``(10, 10, C)`` grids as float32 (the torsos divide only uint8 by 255), actions are
gymnax's minimal action set per game (``GAMES[game].num_actions``: 3 to 6), not
MinAtar's full 6-action set, so a policy never wastes mass on no-op duplicates.

Vectorisation: ``jax.vmap`` of gymnax's ``step`` / ``reset`` over the envs, jitted once
per (game, num_envs). Each env carries its own PRNG key, split from
``PRNGKey(seed)``; every step splits it once (``(next, step_key)``) and gymnax's step
auto-resets on termination or truncation with the step key: the same-step autoreset
contract of ``rldarts.env.envs`` (``obs[i]`` after a done is the new episode's first
observation). ``info['final_obs']`` is the true terminal observation here (gymnax keeps
it), unlike Procgen; nothing in rldarts bootstraps from it.

There are no levels: ``num_levels``, ``start_level``, ``distribution_mode`` and
``num_threads`` are Procgen options, ignored here (``rldarts.env.families``). JAX and
gymnax are imported when an env is built, so the game table stays NumPy-only.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from rldarts.env.envs import VecEnv


@dataclasses.dataclass(frozen=True)
class Game:
    gymnax_id: str
    channels: int  # observation (10, 10, channels)
    num_actions: int  # gymnax's minimal action set


# tests/test_minatar.py checks every row against gymnax itself.
GAMES = {
    "asterix": Game("Asterix-MinAtar", 4, 5),
    "breakout": Game("Breakout-MinAtar", 4, 3),
    "freeway": Game("Freeway-MinAtar", 7, 3),
    "seaquest": Game("Seaquest-MinAtar", 10, 6),
    "space_invaders": Game("SpaceInvaders-MinAtar", 6, 4),
}
OBS_SIZE = 10


@functools.cache
def _compiled(gymnax_id: str):
    """(reset(keys) -> (obs, states, keys), step(states, keys, actions) -> ...), jitted
    vmaps of gymnax's own reset / step (one compile per shape, shared by all envs)."""
    import gymnax
    import jax

    env, params = gymnax.make(gymnax_id)

    def reset_one(key):
        key, sub = jax.random.split(key)
        obs, state = env.reset(sub, params)
        return obs, state, key

    def step_one(state, key, action):
        key, sub = jax.random.split(key)
        obs, state, reward, terminated, truncated, info = env.step(sub, state, action, params)
        return obs, state, key, reward, terminated, truncated, info["final_observation"]

    return jax.jit(jax.vmap(reset_one)), jax.jit(jax.vmap(step_one))


def env_keys(seed: int, num_envs: int):
    """The envs' PRNG keys of a seed: ``split(PRNGKey(seed), num_envs)``."""
    import jax

    return jax.random.split(jax.random.PRNGKey(seed), num_envs)


class MinAtarVecEnv(VecEnv):
    """``num_envs`` copies of one MinAtar game, stepped by one jitted call per step."""

    def __init__(self, game: str, num_envs: int, seed: int = 0):
        g = GAMES[game]
        self.game, self.num_envs, self.seed = game, int(num_envs), int(seed)
        self.num_actions = g.num_actions
        self.observation_shape = (OBS_SIZE, OBS_SIZE, g.channels)
        self.observation_dtype = np.dtype(np.float32)
        self._reset, self._step = _compiled(g.gymnax_id)
        self._state = self._keys = None

    def reset(self) -> np.ndarray:
        obs, self._state, self._keys = self._reset(env_keys(self.seed, self.num_envs))
        return np.asarray(obs, np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions).astype(np.int32, copy=False).reshape(-1)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions, got shape {actions.shape}")
        if self._state is None:
            raise RuntimeError("MinAtarVecEnv.step before reset")
        obs, self._state, self._keys, rew, term, trunc, final = self._step(
            self._state, self._keys, actions
        )
        terminated, truncated = np.asarray(term, bool), np.asarray(trunc, bool)
        done = terminated | truncated
        info = {
            "terminated": terminated,
            "truncated": truncated,
            "final_obs": np.asarray(final, np.float32)[np.flatnonzero(done)],
        }
        return np.asarray(obs, np.float32), np.asarray(rew, np.float32), done, info

    # The device seam (``rldarts.learn.actor.Actor.act_scan``): gymnax's vmapped step as a
    # pure function of the env carry (states, keys), traced into the actor's rollout scan
    # instead of called from the host once per step. Same step, same numbers.
    @property
    def device_carry(self):
        if self._state is None:
            raise RuntimeError("MinAtarVecEnv.device_carry before reset")
        return self._state, self._keys

    @device_carry.setter
    def device_carry(self, carry) -> None:
        self._state, self._keys = carry

    def device_step(self, carry, actions):
        """((states, keys), actions) -> ((states, keys), (obs, reward, done)); traceable."""
        obs, state, keys, rew, term, trunc, _ = self._step(*carry, actions.astype("int32"))
        return (state, keys), (obs.astype("float32"), rew.astype("float32"), term | trunc)

    def close(self) -> None:
        self._state = self._keys = None
