"""What a training loop steps: a VecEnv (rldarts/env/envs.py) with per-env episode statistics
and, for PPO, gym-style reward normalisation; all pure NumPy and checkpointable
(``state_dict`` / ``load_state_dict``), so a resumed run continues the same statistics.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class EpisodeStats:
    """Per-env running raw return/length; reports episodes as they finish."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs, np.float64)
        self.lengths = np.zeros(num_envs, np.int64)

    def update(self, reward: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        done = np.asarray(done, dtype=bool)
        self.returns += np.asarray(reward, dtype=np.float64)
        self.lengths += 1
        finished = (self.returns[done].copy(), self.lengths[done].copy())
        self.returns[done] = 0.0
        self.lengths[done] = 0
        return finished

    def reset(self) -> None:
        """Discard running episodes (call when the VecEnv is reset)."""
        self.returns[:] = 0.0
        self.lengths[:] = 0

    def state_dict(self) -> dict:
        return {"returns": self.returns.copy(), "lengths": self.lengths.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.returns = np.array(state["returns"], np.float64)
        self.lengths = np.array(state["lengths"], np.int64)


class RunningMeanStd:
    """Exact running mean/var via parallel-Welford batch merges (Chan et al.).

    Unlike gym's version (prior mean 0, var 1, count 1e-4) this starts at count 0
    (the first merge then just copies the batch moments), so mean/var equal
    np.mean/np.var over all samples seen, up to rounding.
    """

    def __init__(self, shape: tuple = ()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 0.0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        b_mean, b_var, b_count = x.mean(axis=0), x.var(axis=0), x.shape[0]
        delta, tot = b_mean - self.mean, self.count + b_count
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / tot
        self.mean, self.var, self.count = self.mean + delta * b_count / tot, m2 / tot, tot

    def state_dict(self) -> dict:
        return {"mean": np.array(self.mean), "var": np.array(self.var), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var = np.array(state["mean"]), np.array(state["var"])
        self.count = float(state["count"])


class RewardNormalizer:
    """gym NormalizeReward: scale rewards by the std of the discounted return.

    ret = ret * gamma * (1 - done_prev) + r; the return statistic resets after an
    episode ends so it never mixes episodes. The mean is not subtracted (shifting
    rewards would change the optimal policy in episodic tasks).
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8):
        self.gamma, self.clip, self.epsilon = float(gamma), float(clip), float(epsilon)
        self.ret = np.zeros(num_envs, np.float64)
        self.rms = RunningMeanStd()

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        reward = np.asarray(reward, np.float64)
        self.ret = self.ret * self.gamma + reward
        self.rms.update(self.ret)
        self.ret[np.asarray(done, dtype=bool)] = 0.0  # Applies from the next step on.
        out = reward / np.sqrt(self.rms.var + self.epsilon)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    update = __call__

    def reset(self) -> None:
        self.ret[:] = 0.0

    def state_dict(self) -> dict:
        return {"ret": self.ret.copy(), "rms": self.rms.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.ret = np.array(state["ret"], np.float64)
        self.rms.load_state_dict(state["rms"])


class TrainingEnv:
    """VecEnv + EpisodeStats (+ RewardNormalizer) for a training loop.

    step() returns rewards for learning (normalised if enabled) and the RAW
    returns/lengths of episodes that finished this step, for logging. The step's
    info dict (terminated/truncated/final_obs) is kept in ``last_info``.
    """

    def __init__(
        self,
        venv: Any,  # an envs.VecEnv (envs imports this module, not back)
        gamma: float = 0.999,
        normalize_reward: bool = True,
        clip: float = 10.0,
    ):
        self.venv = venv
        self.num_envs, self.num_actions = venv.num_envs, venv.num_actions
        self.observation_shape, self.observation_dtype = (
            venv.observation_shape,
            venv.observation_dtype,
        )
        self.stats = EpisodeStats(venv.num_envs)
        self.normalizer = RewardNormalizer(venv.num_envs, gamma, clip) if normalize_reward else None
        self.last_info: dict = {}

    def reset(self) -> np.ndarray:
        self.stats.reset()
        if self.normalizer is not None:
            self.normalizer.reset()
        return self.venv.reset()

    def step(self, actions: np.ndarray):
        obs, reward, done, self.last_info = self.venv.step(actions)
        return (obs, *self.account(reward, done))

    def account(self, reward: np.ndarray, done: np.ndarray):
        """One step's bookkeeping on the host: (reward for learning, done, the raw returns
        and lengths of the episodes that ended). ``step`` does it after each env step; an
        actor that stepped the envs on the device does it afterwards, step by step."""
        finished_returns, finished_lengths = self.stats.update(reward, done)
        if self.normalizer is not None:
            reward = self.normalizer(reward, done)
        return reward, done, finished_returns, finished_lengths

    def state_dict(self) -> dict:
        return {
            "stats": self.stats.state_dict(),
            "normalizer": None if self.normalizer is None else self.normalizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.stats.load_state_dict(state["stats"])
        if self.normalizer is not None and state.get("normalizer") is not None:
            self.normalizer.load_state_dict(state["normalizer"])

    def close(self) -> None:
        self.venv.close()
