"""The agents a run can train (``config.agent``): one registry entry each, and the
interface the driver (``rldarts.run``) relies on. Adding an agent = a learner module in
this layer + one entry in ``AGENTS``; the driver, actor, alpha optimizer, logger and
checkpointer are shared."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np

from rldarts.learn import dqn, ppo, sac
from rldarts.learn.actor import Actor


class AgentInterface(Protocol):
    """What the driver relies on; ``ppo.Agent`` and ``dqn.Agent`` implement it. The
    constructor is ``(config, torso, num_actions, mode, num_heldout, total_env_steps,
    topology, env_spec=None)``; ``num_actions`` and ``env_spec`` (observation shape and
    dtype: ``rldarts.env.families.EnvSpec``) come from the env family. The actor, the
    alpha optimizer (``arch``), the logger and the checkpointer are the driver's: an
    agent writes none of them again."""

    num_envs: int  # acting envs of all processes, held-out ones last
    steps_per_iteration: int  # env steps (all processes) between two metrics rows
    normalize_reward: bool  # the actor's TrainingEnv normalises rewards (PPO)
    continuous_actions: bool  # acts in [-1, 1]^action_dim (SAC) or picks one of N actions
    policy: Callable  # (params, alphas, obs, key, inv_temp, group=0) -> (actions, extras)
    eval_policy: Callable  # same signature, for evaluation episodes

    def init_state(self, alphas: dict, sample_obs: np.ndarray, key: jax.Array) -> Any:
        """The learner state: a pytree (NamedTuple) with ``params`` and ``alphas``."""

    def run_iteration(
        self, actor: Actor, state: Any, inv_temp: jax.Array, next_inv_temp: jax.Array | None = None
    ) -> tuple[Any, dict, list]:
        """Acts and learns for ``steps_per_iteration`` env steps: (state, metrics,
        finished episodes per env group). ``next_inv_temp``: the next iteration's
        temperature when it continues this env segment (the async actor may start its
        acting now), else None."""

    def learner_programs(self, state: Any) -> dict[str, tuple[Callable, tuple]]:
        """The learner's jitted programs by name, each with the arguments of one call
        (``jax.ShapeDtypeStruct``s; ``state`` may be abstract, ``jax.eval_shape`` of
        ``init_state``): what ``rldarts.run.memory`` compiles to plan memory and
        ``benchmarks/export_check.py`` lowers for other platforms."""

    def start_segment(self, seed: int, segment: int) -> None: ...
    def state_dict(self) -> dict: ...  # JSON-able host state saved with checkpoints
    def load_state_dict(self, state: dict) -> None: ...
    def save_extra(self, directory: str, step: int) -> None: ...  # e.g. DQN's replays
    def prune_extra(self, directory: str, kept_steps) -> None: ...
    def load_extra(self, directory: str, step: int) -> str: ...  # a note for the log
    def close(self) -> None: ...  # stops the actor thread, if any


AGENTS: dict[str, type[AgentInterface]] = {"ppo": ppo.Agent, "dqn": dqn.Agent, "sac": sac.Agent}
