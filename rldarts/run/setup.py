"""What a run is built from, before its workdir is touched: the agent registry and the
interface the driver relies on, ``build`` (validate the config, make the torso, the
alphas and the agent, place the devices) and the env groups of each env segment.

Everything that can be wrong with the input (config, genotype file) is checked here, so
a refused run writes nothing.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from rldarts.env import families, training_env
from rldarts.learn import arch, parallel
from rldarts.learn.agents import AGENTS, AgentInterface
from rldarts.model import networks, remat
from rldarts.model import ops as ops_lib
from rldarts.model.genotypes import NetworkGenotype
from rldarts.run import config_checks, memory


@dataclasses.dataclass
class Setup:
    """Everything built from a config before the workdir is touched."""

    config: object
    agent: AgentInterface
    ops: tuple
    alphas: dict
    num_heldout: int
    num_iterations: int
    topology: parallel.Topology


def build(c, require_supernet: bool) -> Setup:
    """Setup.config is ``c`` with the network keys a genotype file records settled
    (``config_checks.resolve_genotype_config``) and ``net.remat`` resolved to the level
    whose learner step fits the device (``rldarts.run.memory``); ``c`` itself is left as
    is. A learner step that fits at no allowed level is refused in one line. Runs on
    several devices or processes are not planned (their step is sharded)."""
    c = config_checks.resolve_genotype_config(c)
    config_checks.validate(c)
    genotype = NetworkGenotype.load(c.genotype) if c.genotype else None
    levels = remat_levels(c.net.get("remat", "auto"), c.network in networks.CELL_TYPES)
    limit, where = memory.device_limit()  # before a compile: a bad limit ends in one line
    for level in levels:
        with c.unlocked():
            c.net.remat = level
        s = _build(c, genotype, require_supernet)
        if not s.topology.trivial:
            # The plan is of the one-device program; a sharded learner splits the batch
            # over its devices (and processes), so it would only be an upper bound.
            return s
        plan = memory.plan(s.agent, s.alphas, families.spec(c.env_name), memory.STEP_PROGRAMS)
        name, peak = next((k, v["peak_bytes"]) for k, v in plan.items())
        if peak <= limit:
            return s
        s.agent.close()
    raise ValueError(memory.refusal(name.replace("_", " "), peak, limit, where, level, levels))


def remat_levels(requested: str, darts: bool, backend: str | None = None) -> tuple[str, ...]:
    """The ``net.remat`` levels to try in order: ``auto`` goes from the least recompute
    to the most on GPU / TPU; a network without cells, or the CPU backend, has only
    ``none`` (XLA:CPU's plan does not shrink under remat: benchmarks/results/README.md,
    issue 21; each level tried is a compile). A level set explicitly is tried alone."""
    if requested != "auto":
        return (remat.check(requested),)
    backend = backend or jax.default_backend()
    return remat.LEVELS if darts and backend != "cpu" else ("none",)


def _build(c, genotype, require_supernet: bool) -> Setup:
    torso = networks.make_torso(
        c.network,
        depths=tuple(c.net.depths),
        dense=c.net.dense,
        search_space=c.net.search_space,
        num_nodes=c.net.num_nodes,
        output_mode=c.net.output_mode,
        first_conv=c.net.first_conv,
        genotype=genotype,
        method=c.arch.method,
        partial_channels_k=c.arch.partial_channels_k,
        remat=c.net.remat,
    )
    supernet = c.network in networks.CELL_TYPES and genotype is None
    if require_supernet and not supernet:
        raise ValueError(
            f"search needs a supernet: network={c.network!r}"
            f"{' with a genotype' if genotype else ''}; use network "
            f"{' or '.join(networks.CELL_TYPES)} without a genotype"
        )
    ops = ops_lib.resolve_search_space(c.net.search_space)
    alphas = (
        networks.init_network_alphas(c.network, ops, c.net.num_nodes, method=c.arch.method)
        if supernet
        else {}
    )
    mode = c.arch.mode if supernet else "frozen"
    num_envs = config_checks.num_envs(c)
    num_heldout = arch.heldout_envs(c.arch, num_envs) if supernet else 0
    config_checks.check_parallel(c, num_heldout)
    topology = parallel.make_topology(c.parallel)
    env = families.spec(c.env_name)
    agent = AGENTS[c.agent](
        c, torso, env.num_actions, mode, num_heldout, c.total_env_steps, topology, env_spec=env
    )
    return Setup(
        c,
        agent,
        ops,
        alphas,
        num_heldout,
        math.ceil(c.total_env_steps / agent.steps_per_iteration),
        topology,
    )


def env_seed(seed: int, segment: int, process: int = 0) -> int:
    """Env seed of an env segment: fresh, reproducible envs per segment, and on
    multi-host runs per process (process 0 keeps the single-process seeds)."""
    if process == 0:
        return seed * 1_000_003 + segment
    return int(np.random.SeedSequence([seed, segment, process]).generate_state(1)[0] >> 2)


def env_factory(c, agent, num_heldout: int, topology: parallel.Topology):
    """segment -> this process's env groups: training levels, then (alternating)
    held-out levels; each process steps its share of each group."""
    share = topology.local_share

    def make(segment: int):
        seed = env_seed(c.seed, segment, topology.process_index)
        env = lambda n, start, seed: families.make_env(
            c.env_name, share(n), seed, c.num_levels, start, c.distribution_mode, c.num_threads
        )
        groups = [env(agent.num_envs - num_heldout, c.start_level, seed)]
        if num_heldout:
            # Unseen levels (Procgen): the block right after the training levels. Either
            # way the held-out envs play their own seeds (MinAtar: all they differ in).
            unseen = c.arch.heldout_source == "unseen_levels"
            start = c.start_level + c.num_levels if unseen else c.start_level
            groups.append(env(num_heldout, start, seed + 500_000))
        return [
            training_env.TrainingEnv(g, c.ppo.gamma, agent.normalize_reward, c.ppo.reward_clip)
            for g in groups
        ]

    return make
