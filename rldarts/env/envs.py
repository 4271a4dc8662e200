"""Vectorised environments (EnvPool Procgen / classic control) and policy evaluation.

Episode statistics and reward normalisation for training live in rldarts/env/training_env.py.

Conventions shared by everything in this module:

* ``VecEnv.step`` uses *same-step autoreset*: the returned ``obs`` is always the
  observation on which the next action is taken. When ``done[i]`` is True, env
  ``i``'s episode ended on this step and ``obs[i]`` is already the first
  observation of the next episode. ``info['final_obs']`` (rows in
  np.flatnonzero(done) order) is what EnvPool returned with the done: the terminal
  observation for classic control, but for Procgen, which resets itself inside the
  done step, already a frame of the next episode. Nothing in rldarts bootstraps from
  it (PPO's GAE and the DQN replay cut returns at every done). ``info['terminated']``
  and ``info['truncated']`` split ``done``; EnvPool's own info fields describe the
  step just taken, not the new episode.
* EnvPool 1.2.5 itself autoresets on the *next* step: the call after ``done``
  returns the reset observation with reward 0 and ignores its action. We hide
  that dummy step by immediately stepping only the done envs once more
  (``step(actions, env_id=subset)``), so callers never see a bogus transition.
* Procgen images are NHWC uint8 (N, 64, 64, 3). EnvPool's default is NCHW; we
  ask it for channel_first=False, since a NumPy transpose of the batch would
  cost about as much as the env step itself.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import math
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from rldarts.env.training_env import EpisodeStats, TrainingEnv

PROCGEN_GAMES = (
    "bigfish",
    "bossfight",
    "caveflyer",
    "chaser",
    "climber",
    "coinrun",
    "dodgeball",
    "fruitbot",
    "heist",
    "jumper",
    "leaper",
    "maze",
    "miner",
    "ninja",
    "plunder",
    "starpilot",
)
# EnvPool also registers Extreme/Memory/Exploration for *some* games; only the
# two modes every game has (and the ones the RL-DARTS paper uses) are exposed.
DISTRIBUTION_MODES = ("easy", "hard")
# make_gym's discrete-action classic-control tasks (continuous ones excluded).
_CLASSIC_CONTROL = ("CartPole-v0", "CartPole-v1", "Acrobot-v1", "MountainCar-v0")

_QT_LIBS = ("libQt5Core.so.5", "libQt5Gui.so.5")
_QT_FIX = (
    "EnvPool Procgen needs the Qt5 Core/Gui shared libraries; "
    "install them with `pip install PyQt5-Qt5` (or the system Qt5 runtime)."
)


# --------------------------------------------------------------------------------------
# EnvPool import (Qt5 preloading for Procgen)
# --------------------------------------------------------------------------------------
def _preload_qt() -> bool:
    """Make libQt5Core/Gui resolvable for procgen_envpool.so. Returns success.

    The extension links against Qt5 but the venv has no system Qt. Loading the
    copies shipped in the PyQt5-Qt5 wheel with RTLD_GLOBAL puts their symbols in
    the global namespace, so the later dlopen of the extension resolves them.
    """
    if not sys.platform.startswith("linux"):
        return True
    try:  # System Qt (ldconfig path) is fine if present.
        for lib in _QT_LIBS:
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        pass
    spec = importlib.util.find_spec("PyQt5")
    if spec is None or not spec.submodule_search_locations:
        return False
    libdir = os.path.join(list(spec.submodule_search_locations)[0], "Qt5", "lib")
    try:
        for lib in _QT_LIBS:  # Core first: Gui depends on it.
            ctypes.CDLL(os.path.join(libdir, lib), mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        return False


def _import_envpool() -> Any:
    # `import envpool` imports envpool.procgen, which caches a Qt ImportError if
    # Qt is missing at that moment; preload first so the common path just works.
    _preload_qt()
    import envpool

    return envpool


def _ensure_procgen() -> Any:
    envpool = _import_envpool()
    mod = importlib.import_module("envpool.procgen")
    if getattr(mod, "_PROCGEN_IMPORT_ERROR", None) is not None:
        # envpool was imported (elsewhere) before Qt was loadable: retry now.
        if not _preload_qt():
            raise ImportError(_QT_FIX)
        mod = importlib.reload(mod)
        if getattr(mod, "_PROCGEN_IMPORT_ERROR", None) is not None:
            raise ImportError(_QT_FIX) from mod._PROCGEN_IMPORT_ERROR
    return envpool


# --------------------------------------------------------------------------------------
# VecEnv
# --------------------------------------------------------------------------------------
class VecEnv:
    """Synchronous batch of EnvPool envs with same-step autoreset (see module doc)."""

    # JAX-native families set this to a pure, traceable step (``MinAtarVecEnv``), so an
    # actor can trace acting and stepping into one jitted scan (``Actor.act_scan``).
    device_step = None

    def __init__(self, env: Any):
        self._env = env
        self.num_envs = int(env.config["num_envs"])
        self.num_actions = int(env.action_space.n)
        self.observation_shape = tuple(env.observation_space.shape)
        # Images stay uint8 (networks normalise on device); vectors become float32.
        dtype = np.dtype(env.observation_space.dtype)
        self.observation_dtype = dtype if dtype == np.uint8 else np.dtype(np.float32)
        self._all_ids = np.arange(self.num_envs, dtype=np.int32)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        # EnvPool hands out a fresh, writable buffer per call, so no copy is needed.
        return np.asarray(obs, dtype=self.observation_dtype)

    def _sorted(self, info: dict, *arrays: np.ndarray) -> list[np.ndarray]:
        # Sync-mode EnvPool returns envs in env_id order; permute only if it did not.
        if np.array_equal(info["env_id"], self._all_ids):
            return list(arrays)
        order = np.argsort(info["env_id"], kind="stable")
        return [np.asarray(a)[order] for a in arrays]

    def reset(self) -> np.ndarray:
        obs, info = self._env.reset(self._all_ids)
        return self._obs(*self._sorted(info, obs))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions).astype(np.int32, copy=False).reshape(-1)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions, got shape {actions.shape}")
        obs, rew, term, trunc, info = self._env.step(actions, self._all_ids)
        obs, rew, term, trunc = self._sorted(info, obs, rew, term, trunc)
        obs = self._obs(obs)
        terminated, truncated = np.asarray(term, bool), np.asarray(trunc, bool)
        done = terminated | truncated
        info = dict(info)
        info["terminated"], info["truncated"] = terminated, truncated
        done_ids = np.flatnonzero(done).astype(np.int32)
        # Not the terminal frame for Procgen (see the module docstring): never bootstrap.
        info["final_obs"] = obs[done_ids]
        if done_ids.size:
            # Consume EnvPool's dummy reset step now (its action is ignored, reward 0)
            # so obs[done] is the first observation of the new episode.
            r_obs, _, _, _, r_info = self._env.step(np.zeros(done_ids.size, np.int32), done_ids)
            obs[np.asarray(r_info["env_id"])] = self._obs(r_obs)
        return obs, np.asarray(rew, dtype=np.float32), done, info

    def close(self) -> None:
        self._env.close()


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(str, choices))}")


def _check_num_envs(num_envs: Any) -> None:
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")


def make_procgen(
    env_name: str,
    num_envs: int,
    distribution_mode: str = "easy",
    num_levels: int = 200,
    start_level: int = 0,
    seed: int = 0,
    num_threads: int = 0,
) -> VecEnv:
    """Procgen game as a VecEnv with NHWC uint8 observations and 15 actions.

    num_levels=0 samples from the full (unbounded) level distribution, i.e. the
    usual test setting; num_threads=0 lets EnvPool choose.
    """
    _check_choice("Procgen game", env_name, PROCGEN_GAMES)
    _check_choice("distribution_mode", distribution_mode, DISTRIBUTION_MODES)
    _check_num_envs(num_envs)
    if num_levels < 0 or start_level < 0:
        raise ValueError(
            f"num_levels and start_level must be >= 0, got {num_levels}, {start_level}"
        )
    envpool = _ensure_procgen()
    task_id = f"{env_name.capitalize()}{distribution_mode.capitalize()}-v0"
    env = envpool.make(
        task_id,
        env_type="gymnasium",
        num_envs=int(num_envs),
        num_threads=int(num_threads),
        seed=int(seed),
        num_levels=int(num_levels),
        start_level=int(start_level),
        channel_first=False,
    )
    return VecEnv(env)


def make_gym(
    env_id: str,
    num_envs: int,
    seed: int = 0,
    num_threads: int = 0,
    max_episode_steps: int | None = None,
) -> VecEnv:
    """EnvPool classic-control env (e.g. 'CartPole-v1'), float32 vector observations."""
    _check_num_envs(num_envs)
    envpool = _import_envpool()
    valid = tuple(e for e in envpool.list_all_envs() if e in _CLASSIC_CONTROL)
    _check_choice("gym env_id", env_id, valid)
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
    with warnings.catch_warnings():
        # EnvPool builds float64-bounded gymnasium Boxes: the float32 cast warning is noise.
        warnings.filterwarnings("ignore", message=".*precision lowered.*")
        env = envpool.make(
            env_id,
            env_type="gymnasium",
            num_envs=int(num_envs),
            num_threads=int(num_threads),
            seed=int(seed),
            **kwargs,
        )
        return VecEnv(env)  # Spaces are built lazily, here.


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------
def evaluate(
    act_fn: Callable[[np.ndarray, Any], Any],
    env: VecEnv | Callable[[], VecEnv],
    num_episodes: int,
    key: Any = 0,
    max_steps: int = 1_000_000,
) -> dict:
    """Run a policy until ``num_episodes`` episodes finished; return raw-return stats.

    act_fn(obs, key) -> actions (e.g. a jitted stochastic policy). ``env`` is a
    VecEnv (it is reset first) or a zero-arg factory (the env is closed after).
    ``key`` is a JAX PRNG key or an int seed; a fresh subkey is used per step.

    Fairness: waiting for the first N episodes overall would over-sample short
    episodes, so we take the first ceil(N / num_envs) episodes of *every* env,
    then keep the first N in (episode index, env index) order.
    """
    import jax  # Local import: the env code itself does not need JAX.

    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    owned = not isinstance(env, (VecEnv, TrainingEnv))
    venv = env() if owned else env
    venv = venv.venv if isinstance(venv, TrainingEnv) else venv  # Raw rewards only.
    key = jax.random.PRNGKey(key) if isinstance(key, (int, np.integer)) else key
    per_env = math.ceil(num_episodes / venv.num_envs)
    rets = np.zeros((per_env, venv.num_envs), np.float64)
    lens = np.zeros((per_env, venv.num_envs), np.int64)
    count = np.zeros(venv.num_envs, np.int64)
    stats = EpisodeStats(venv.num_envs)
    try:
        obs = venv.reset()
        for _ in range(max_steps):
            if (count >= per_env).all():
                break
            key, sub = jax.random.split(key)
            actions = np.asarray(act_fn(obs, sub))
            obs, reward, done, _ = venv.step(actions)
            f_ret, f_len = stats.update(reward, done)
            for i, r, n in zip(np.flatnonzero(done), f_ret, f_len):
                if count[i] < per_env:
                    rets[count[i], i], lens[count[i], i] = r, n
                    count[i] += 1
        else:
            raise RuntimeError(f"evaluate: only {count.sum()} episodes after {max_steps} steps")
    finally:
        if owned:
            venv.close()
    returns = rets.reshape(-1)[:num_episodes]
    lengths = lens.reshape(-1)[:num_episodes]
    return {
        "mean_return": float(returns.mean()),
        "std": float(returns.std()),
        "returns": returns,
        "lengths": lengths,
        "mean_length": float(lengths.mean()),
    }
