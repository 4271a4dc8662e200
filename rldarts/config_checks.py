"""Validation of experiment configs and the fingerprint that guards resuming.

Every bad value is reported as one ValueError line that names the key, the value and
the valid choices, before anything is written to the workdir.
"""
from __future__ import annotations

from rldarts import arch, cells, envs, networks
from rldarts import ops as ops_lib
from rldarts.agents import ppo

AGENTS = ("ppo", "dqn")
# Keys that may change between a run and its resumption.
# ppo.microbatch_size and ppo.update_loop are compute only (same update; absent from
# checkpoints made before they existed).
RESUMABLE_KEYS = ("total_env_steps", "eval", "num_threads", "ppo.microbatch_size",
                  "ppo.update_loop")


def _choice(key, value, choices):
    if value not in choices:
        raise ValueError(f"config {key}={value!r} is not valid; valid choices: "
                         f"{', '.join(map(str, choices))}")


def _positive(c, *keys):
    for key in keys:
        value = c
        for part in key.split("."):
            value = value[part]
        if isinstance(value, bool) or not value > 0:
            raise ValueError(f"config {key}={value!r} must be positive")


def num_envs(c) -> int:
    """The acting envs of the configured agent."""
    return c.ppo.num_envs if c.agent == "ppo" else c.dqn.num_envs


def validate(c) -> None:
    _choice("env_name", c.env_name, envs.PROCGEN_GAMES)
    _choice("distribution_mode", c.distribution_mode, envs.DISTRIBUTION_MODES)
    _choice("agent", c.agent, AGENTS)
    _choice("network", c.network, tuple(n for n in networks.NETWORKS if n != "mlp"))
    _choice("arch.mode", c.arch.mode, arch.MODES)
    ppo.update_loop(c.ppo.update_loop)  # raises on an unknown choice
    _choice("arch.optimizer", c.arch.optimizer, arch.OPTIMIZERS)
    _choice("arch.heldout_source", c.arch.heldout_source, arch.HELDOUT_SOURCES)
    _choice("net.output_mode", c.net.output_mode, cells.OUTPUT_MODES)
    try:
        ops_lib.resolve_search_space(c.net.search_space)
    except ValueError as e:
        raise ValueError(f"config net.search_space: {e}") from None
    if c.num_levels < 0 or c.start_level < 0 or c.num_threads < 0:
        raise ValueError("config num_levels, start_level and num_threads must be >= 0")
    if not c.net.depths or any(d <= 0 for d in c.net.depths):
        raise ValueError(f"config net.depths={tuple(c.net.depths)} must be positive ints")
    _positive(c, "total_env_steps", "net.dense", "net.num_nodes", "arch.discretize_k",
              "ppo.num_envs", "ppo.num_steps", "ppo.num_minibatches", "ppo.update_epochs",
              "ppo.learning_rate", "ppo.adam_eps", "ppo.max_grad_norm",
              "eval.every_iterations", "eval.num_episodes", "eval.num_envs",
              "log.checkpoint_every_iterations", "log.genotype_every_iterations")
    _positive(c, "dqn.num_envs", "dqn.iteration_env_steps", "dqn.replay_capacity",
              "dqn.batch_size", "dqn.samples_per_insert", "dqn.n_step",
              "dqn.learning_rate", "dqn.target_update_period", "dqn.num_atoms", "dqn.hidden")
    if c.dqn.v_max <= c.dqn.v_min:
        raise ValueError(f"config dqn.v_max={c.dqn.v_max} must exceed dqn.v_min={c.dqn.v_min}")
    if c.dqn.replay_capacity // c.dqn.num_envs <= c.dqn.n_step + 1:
        raise ValueError(f"config dqn.replay_capacity={c.dqn.replay_capacity} is too small "
                         f"for {c.dqn.num_envs} envs and n_step {c.dqn.n_step}")
    if not 0 < c.ppo.gamma <= 1 or not 0 <= c.ppo.gae_lambda <= 1:
        raise ValueError(f"config ppo.gamma={c.ppo.gamma} and ppo.gae_lambda="
                         f"{c.ppo.gae_lambda} must lie in (0, 1] and [0, 1]")
    if c.genotype and c.network not in networks.CELL_TYPES:
        raise ValueError(f"config genotype={c.genotype!r} needs a DARTS network; set "
                         f"network to one of {', '.join(networks.CELL_TYPES)}")
    arch.heldout_envs(c.arch, num_envs(c))  # raises on an empty split


def fingerprint(c) -> dict:
    """What must match for a workdir's checkpoint to be resumed with this config."""
    d = c.to_dict()
    for key in RESUMABLE_KEYS:
        *parents, leaf = key.split(".")
        section = d
        for name in parents:
            section = section.get(name, {})
        section.pop(leaf, None)
    return d
