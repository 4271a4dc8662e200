"""The env families a run can use, one registry entry each: which env names a family
owns, what its observations and actions are, whether it has a level split, and how to
build a ``VecEnv`` of it. The run layer asks only this module (``make_env``, ``spec``,
``check_env_name``), never a family's own constructor.

* ``procgen``: the 16 Procgen games by bare name (``starpilot``), EnvPool, uint8
  ``(64, 64, 3)``, 15 actions; levels: training envs play ``num_levels`` levels from
  ``start_level``, ``num_levels=0`` is the full distribution (the test levels).
* ``minatar``: ``minatar/<game>`` (``rldarts.env.minatar``), gymnax, float32
  ``(10, 10, C)``, the game's minimal action set. No levels: every env draws its
  episodes from the one distribution, seeded by the env seed, so ``num_levels``,
  ``start_level``, ``distribution_mode`` and ``num_threads`` are ignored, the test
  evaluation plays fresh seeds, and the "train levels" evaluation is the same
  distribution again (fresh seeds too). Held-out envs of ``alternating`` play other
  seeds (``arch.heldout_source='rollout_split'``); ``unseen_levels`` is refused.
* ``dmc``: ``dmc/<domain>_<task>`` (``rldarts.env.dmc``), DM-Control from pixels, uint8
  ``(84, 84, 9)`` (3 stacked RGB frames), continuous actions in [-1, 1]^action_dim
  (``EnvSpec.action_dim`` > 0, ``num_actions`` 0). No levels, as MinAtar.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from rldarts.env import dmc, envs, minatar


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What a network and an agent are built for, known before any env exists."""

    observation_shape: tuple[int, ...]
    observation_dtype: np.dtype
    num_actions: int  # discrete actions; 0 for a continuous family
    action_dim: int = 0  # continuous actions in [-1, 1]^action_dim; 0 for a discrete one

    @property
    def continuous(self) -> bool:
        return self.action_dim > 0


@dataclasses.dataclass(frozen=True)
class EnvFamily:
    names: tuple[str, ...]  # the env_name values this family owns
    has_levels: bool  # Procgen's level split (num_levels, start_level, unseen_levels)
    spec: Callable[[str], EnvSpec]
    # (env_name, num_envs, seed, num_levels, start_level, distribution_mode, num_threads)
    make: Callable[..., envs.VecEnv]
    # Env frames per agent step (DM-Control's action repeat): what curves are drawn
    # against, as the DM-Control literature (DrQ, PI-SAC) reports its budgets in frames.
    frames_per_step: Callable[[str], int] = lambda name: 1
    # JAX-native envs (their VecEnv has a traceable ``device_step``): a rollout can be
    # one jitted scan (``ppo.rollout_loop``).
    steps_on_device: bool = False


MINATAR_PREFIX = "minatar/"


def _procgen_make(name, num_envs, seed, num_levels, start_level, distribution_mode, threads):
    return envs.make_procgen(
        name, num_envs, distribution_mode, num_levels, start_level, seed, threads
    )


def _minatar_make(name, num_envs, seed, *_procgen_options):
    return minatar.MinAtarVecEnv(name[len(MINATAR_PREFIX) :], num_envs, seed)


def _minatar_spec(name: str) -> EnvSpec:
    game = minatar.GAMES[name[len(MINATAR_PREFIX) :]]
    shape = (minatar.OBS_SIZE, minatar.OBS_SIZE, game.channels)
    return EnvSpec(shape, np.dtype(np.float32), game.num_actions)


def _dmc_make(name, num_envs, seed, *_procgen_options):
    return dmc.DMCVecEnv(name, num_envs, seed)


def _dmc_spec(name: str) -> EnvSpec:
    return EnvSpec(dmc.OBSERVATION_SHAPE, np.dtype(np.uint8), 0, dmc.task(name).action_dim)


ENV_FAMILIES = {
    "procgen": EnvFamily(
        envs.PROCGEN_GAMES,
        True,
        lambda name: EnvSpec((64, 64, 3), np.dtype(np.uint8), 15),
        _procgen_make,
    ),
    "minatar": EnvFamily(
        tuple(MINATAR_PREFIX + g for g in minatar.GAMES),
        False,
        _minatar_spec,
        _minatar_make,
        steps_on_device=True,
    ),
    "dmc": EnvFamily(
        tuple(dmc.PREFIX + t for t in dmc.TASKS),
        False,
        _dmc_spec,
        _dmc_make,
        lambda name: dmc.task(name).action_repeat,
    ),
}
ENV_NAMES = tuple(n for f in ENV_FAMILIES.values() for n in f.names)


def family(env_name: str) -> EnvFamily:
    """The family owning ``env_name``; one ValueError line naming the valid names."""
    for fam in ENV_FAMILIES.values():
        if env_name in fam.names:
            return fam
    if isinstance(env_name, str) and env_name.startswith(MINATAR_PREFIX):
        valid = ", ".join(ENV_FAMILIES["minatar"].names)
        raise ValueError(f"unknown MinAtar game {env_name!r}; valid MinAtar games: {valid}")
    if isinstance(env_name, str) and env_name.startswith(dmc.PREFIX):
        dmc.task(env_name)  # raises, naming the valid DM-Control tasks
    raise ValueError(
        f"unknown env_name {env_name!r}; valid: the Procgen games "
        f"{', '.join(envs.PROCGEN_GAMES)}, or {', '.join(ENV_FAMILIES['minatar'].names)}, "
        f"or {', '.join(ENV_FAMILIES['dmc'].names)}"
    )


def spec(env_name: str) -> EnvSpec:
    return family(env_name).spec(env_name)


def make_env(
    env_name: str,
    num_envs: int,
    seed: int = 0,
    num_levels: int = 0,
    start_level: int = 0,
    distribution_mode: str = "easy",
    num_threads: int = 0,
) -> envs.VecEnv:
    """A ``VecEnv`` of ``env_name``; the level options apply to families with levels."""
    envs._check_num_envs(num_envs)
    return family(env_name).make(
        env_name, num_envs, seed, num_levels, start_level, distribution_mode, num_threads
    )
