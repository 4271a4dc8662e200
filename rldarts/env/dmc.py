"""DeepMind Control Suite tasks from pixels behind the host ``VecEnv`` interface.

Env names ``dmc/<domain>_<task>`` (``TASKS``). As PlaNet / DrQ (Hafner et al. 2019,
Kostrikov et al. 2020): 84x84 RGB from camera 0, each action repeated ``action_repeat``
physics-control steps (cartpole 8, finger 2, walker 2, the others 4; rewards summed),
the last ``FRAME_STACK`` = 3 frames stacked on the channel axis, so observations are uint8
``(84, 84, 9)``; actions are float32 in [-1, 1]^action_dim (every task here has that box).
An episode is 1000 control steps (1000 / action_repeat agent steps) and always ends by the
time limit: ``info['truncated']`` is set, ``info['terminated']`` never is for these tasks.

Rendering: dm_control's default offscreen buffer (multi-sampled, shadows, 640x480) costs
most of a step; each env's model gets ``vis.quality.offsamples = 0``, ``shadowsize = 0``
and an 84x84 offscreen buffer before its first render (issue 22: ~4-10x faster, mean
pixel difference ~1/255). ``MUJOCO_GL`` defaults to ``egl`` (headless); set it to
``osmesa`` (``apt-get install libosmesa6``) where EGL is missing.

Vectorisation: ``num_envs`` dm_control envs stepped one after the other on the host (as
EnvPool steps Procgen), same-step autoreset (``obs[i]`` after a done is the next
episode's first stacked frame; ``info['final_obs']`` holds the true final ones). Seeds:
env i's task RNG is ``RandomState(SeedSequence([seed, i]))``, so the envs of a seed are
reproducible and differ from each other; resume is the segment design of
``rldarts.learn.actor`` (fresh envs per segment). dm_control is imported when an env is
built, so the task table stays import-free.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from rldarts.env.envs import VecEnv

PREFIX = "dmc/"
IMAGE_SIZE = 84
FRAME_STACK = 3
CAMERA_ID = 0


@dataclasses.dataclass(frozen=True)
class Task:
    domain: str
    task: str
    action_repeat: int  # PlaNet / DrQ
    action_dim: int  # tests/test_dmc.py checks it against dm_control's action spec


TASKS = {
    "cartpole_swingup": Task("cartpole", "swingup", 8, 1),
    "cheetah_run": Task("cheetah", "run", 4, 6),
    "walker_walk": Task("walker", "walk", 2, 6),
    "finger_spin": Task("finger", "spin", 2, 2),
    "reacher_easy": Task("reacher", "easy", 4, 2),
    "ball_in_cup_catch": Task("ball_in_cup", "catch", 4, 2),
}
OBSERVATION_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3 * FRAME_STACK)


def task(name: str) -> Task:
    """The task of ``dmc/<domain>_<task>``; one ValueError line naming the valid ones."""
    key = name[len(PREFIX) :] if isinstance(name, str) and name.startswith(PREFIX) else None
    if key not in TASKS:
        valid = ", ".join(PREFIX + t for t in TASKS)
        raise ValueError(f"unknown DM-Control task {name!r}; valid DM-Control tasks: {valid}")
    return TASKS[key]


def load(t: Task, seed: int):
    """One dm_control env of ``t`` with the fast render settings (before any render)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from dm_control import suite

    env = suite.load(t.domain, t.task, task_kwargs={"random": np.random.RandomState(seed)})
    vis = env.physics.model.vis
    vis.quality.offsamples = 0
    vis.quality.shadowsize = 0
    vis.global_.offwidth = IMAGE_SIZE
    vis.global_.offheight = IMAGE_SIZE
    return env


def env_seed(seed: int, index: int) -> int:
    """Env ``index``'s task seed of a VecEnv seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


class DMCVecEnv(VecEnv):
    """``num_envs`` copies of one DM-Control task from pixels, stepped on the host."""

    def __init__(self, name: str, num_envs: int, seed: int = 0):
        self.task = task(name)
        self.num_envs, self.seed = int(num_envs), int(seed)
        self.num_actions = 0  # continuous: see action_dim
        self.action_dim = self.task.action_dim
        self.observation_shape = OBSERVATION_SHAPE
        self.observation_dtype = np.dtype(np.uint8)
        self._envs = [load(self.task, env_seed(seed, i)) for i in range(self.num_envs)]
        self._stack = np.zeros((self.num_envs, *OBSERVATION_SHAPE), np.uint8)

    def _render(self, i: int) -> np.ndarray:
        return self._envs[i].physics.render(IMAGE_SIZE, IMAGE_SIZE, camera_id=CAMERA_ID)

    def _reset_one(self, i: int) -> None:
        self._envs[i].reset()
        self._stack[i] = np.tile(self._render(i), (1, 1, FRAME_STACK))

    def reset(self) -> np.ndarray:
        for i in range(self.num_envs):
            self._reset_one(i)
        return self._stack.copy()

    def _repeat(self, i: int, action: np.ndarray):
        """``action_repeat`` control steps (fewer if the episode ends): (reward, last,
        discount of the last step)."""
        reward = 0.0
        for _ in range(self.task.action_repeat):
            ts = self._envs[i].step(action)
            reward += ts.reward or 0.0
            if ts.last():
                return reward, True, ts.discount
        return reward, False, 1.0

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions, np.float64).reshape(self.num_envs, -1)
        if actions.shape != (self.num_envs, self.action_dim):
            raise ValueError(
                f"expected actions of shape {(self.num_envs, self.action_dim)}, got {actions.shape}"
            )
        rewards = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        for i in range(self.num_envs):
            rewards[i], last, discount = self._repeat(i, np.clip(actions[i], -1.0, 1.0))
            frame = self._render(i)
            self._stack[i] = np.concatenate([self._stack[i, :, :, 3:], frame], axis=-1)
            terminated[i], truncated[i] = last and discount == 0, last and discount > 0
        done = terminated | truncated
        final = self._stack[done].copy()
        for i in np.flatnonzero(done):
            self._reset_one(i)
        info = {"terminated": terminated, "truncated": truncated, "final_obs": final}
        return self._stack.copy(), rewards, done, info

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs = []
