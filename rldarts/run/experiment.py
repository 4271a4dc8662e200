"""One experiment, start to end: build, act, learn, evaluate, log, checkpoint, resume.

Shared by ``experiments.search`` (a supernet learns its alphas) and
``experiments.train`` (a fixed network from scratch). Everything that can be wrong
with the input (config, genotype file, checkpoint of another config) is checked
before the first byte is written to the workdir.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np

from rldarts.common.files import atomic_write_json
from rldarts.env import envs, training_env
from rldarts.learn import arch, dqn, parallel, ppo
from rldarts.learn.actor import Actor
from rldarts.model import networks
from rldarts.model import ops as ops_lib
from rldarts.model.genotypes import NetworkGenotype
from rldarts.run import arch_record, config_checks, run_lifecycle
from rldarts.run.checkpoint import Checkpointer
from rldarts.run.logger import MetricsLogger, format_progress

NUM_ACTIONS = 15  # every Procgen game


class AgentInterface(Protocol):
    """What the driver relies on; ``ppo.Agent`` and ``dqn.Agent`` implement it. The
    constructor is ``(config, torso, num_actions, mode, num_heldout, total_env_steps,
    topology)``. The actor, the alpha optimizer (``arch``), the logger and the
    checkpointer are the driver's: an agent writes none of them again."""

    num_envs: int  # acting envs of all processes, held-out ones last
    steps_per_iteration: int  # env steps (all processes) between two metrics rows
    normalize_reward: bool  # the actor's TrainingEnv normalises rewards (PPO)
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

    def start_segment(self, seed: int, segment: int) -> None: ...
    def state_dict(self) -> dict: ...  # JSON-able host state saved with checkpoints
    def load_state_dict(self, state: dict) -> None: ...
    def save_extra(self, directory: str, step: int) -> None: ...  # e.g. DQN's replays
    def prune_extra(self, directory: str, kept_steps) -> None: ...
    def load_extra(self, directory: str, step: int) -> str: ...  # a note for the log
    def close(self) -> None: ...  # stops the actor thread, if any


AGENTS: dict[str, type[AgentInterface]] = {"ppo": ppo.Agent, "dqn": dqn.Agent}


class NonFiniteLossError(RuntimeError):
    pass


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
    (``config_checks.resolve_genotype_config``); ``c`` itself is left as is."""
    c = config_checks.resolve_genotype_config(c)
    config_checks.validate(c)
    genotype = NetworkGenotype.load(c.genotype) if c.genotype else None
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
    )
    supernet = c.network in networks.CELL_TYPES and genotype is None
    if require_supernet and not supernet:
        raise ValueError(
            f"search needs a supernet: network={c.network!r}"
            f"{' with a genotype' if genotype else ''}; use network "
            f"darts_standard or darts_impala without a genotype"
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
    agent = AGENTS[c.agent](c, torso, NUM_ACTIONS, mode, num_heldout, c.total_env_steps, topology)
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
    """EnvPool seed of an env segment: fresh, reproducible envs per segment, and on
    multi-host runs per process (process 0 keeps the single-process seeds)."""
    if process == 0:
        return seed * 1_000_003 + segment
    return int(np.random.SeedSequence([seed, segment, process]).generate_state(1)[0] >> 2)


def _env_factory(c, agent, num_heldout: int, topology: parallel.Topology):
    """segment -> this process's env groups: training levels, then (alternating)
    held-out levels; each process steps its share of each group."""
    share = topology.local_share

    def make(segment: int):
        seed = env_seed(c.seed, segment, topology.process_index)
        groups = [
            envs.make_procgen(
                c.env_name,
                share(agent.num_envs - num_heldout),
                c.distribution_mode,
                c.num_levels,
                c.start_level,
                seed,
                c.num_threads,
            )
        ]
        if num_heldout:
            unseen = c.arch.heldout_source == "unseen_levels"
            # Unseen levels: the block right after the training levels.
            start = c.start_level + c.num_levels if unseen else c.start_level
            groups.append(
                envs.make_procgen(
                    c.env_name,
                    share(num_heldout),
                    c.distribution_mode,
                    c.num_levels,
                    start,
                    seed + 500_000,
                    c.num_threads,
                )
            )
        return [
            training_env.TrainingEnv(g, c.ppo.gamma, agent.normalize_reward, c.ppo.reward_clip)
            for g in groups
        ]

    return make


def run(c, workdir: str, require_supernet: bool, log=None) -> dict:
    """Trains to ``total_env_steps``; resumes from the workdir's last checkpoint.

    Multi-host (``parallel.coordinator_address``): every process calls this with the
    same config and workdir (on a filesystem all of them see); process 0 writes the
    metrics, genotypes and plots, and all of them write the checkpoint together.

    One attempt per workdir: the workdir is locked for the whole run, and another
    attempt holding it stops this one before it writes anything
    (run_lifecycle.WorkdirLocked); SIGTERM / SIGINT stop the run between iterations
    (run_lifecycle.Interrupted)."""
    parallel.initialize(c.parallel)  # before anything touches a JAX backend
    s = build(c, require_supernet)
    agree = s.topology.allgather_json if s.topology.process_count > 1 else None
    with (
        run_lifecycle.exclusive(workdir, s.topology.process_index, agree),
        run_lifecycle.stop_on_signals(),
    ):
        return _run(s, workdir, log, agree)


def _run(s: Setup, workdir: str, log, agree) -> dict:
    c = s.config  # network keys resolved from the genotype file
    agent, topo = s.agent, s.topology
    primary = topo.is_primary
    log = log or (lambda line: print(line, flush=True))
    if not primary:
        log = lambda line: None  # process 0 reports
    ckpt_dir = os.path.join(workdir, "checkpoints")
    ckpt = Checkpointer(ckpt_dir, config_checks.fingerprint(c))
    ckpt.check_fingerprint()
    start_step = ckpt.latest_step()
    key = jax.random.PRNGKey(c.seed)
    key, actor_key, eval_key = jax.random.split(key, 3)
    if topo.process_index:
        actor_key = jax.random.fold_in(actor_key, topo.process_index)
    actor = Actor(_env_factory(c, agent, s.num_heldout, topo), agent.policy, actor_key, topo)
    eval_policy = jax.jit(agent.eval_policy)
    sample_obs = np.zeros((topo.local_share(agent.num_envs), 64, 64, 3), np.uint8)
    state = agent.init_state(s.alphas, sample_obs, key)
    iteration, resume_steps = 0, None
    if start_step is not None:
        state, host = ckpt.restore(state, start_step)
        iteration, resume_steps = host["iteration"], host["env_steps"]
        mine = host["processes"][topo.process_index] if "processes" in host else host
        actor.load_state_dict(mine["actor"])
        agent.load_state_dict(mine["agent"])
        note = agent.load_extra(ckpt_dir, start_step)
        log(
            f"resuming {workdir} from iteration {iteration} ({resume_steps:,} env steps)"
            + (f"; {note}" if note else "")
        )

    if primary:
        os.makedirs(workdir, exist_ok=True)
        atomic_write_json(os.path.join(workdir, "config.json"), c.to_dict())
    logger = (
        MetricsLogger(
            workdir,
            resume=start_step is not None,
            resume_env_steps=resume_steps,
            tensorboard=c.log.tensorboard,
        )
        if primary
        else None
    )
    searching = bool(s.alphas)
    alpha_hist = (
        arch_record.History(os.path.join(workdir, "alpha_history.jsonl"), resume_steps)
        if primary
        else None
    )
    geno_hist = (
        arch_record.History(os.path.join(workdir, "genotype_history.jsonl"), resume_steps)
        if primary
        else None
    )

    every = c.log.checkpoint_every_iterations
    actor.start_segment(iteration // every)
    agent.start_segment(c.seed, iteration // every)
    t_start = time.time()
    env_steps = iteration * agent.steps_per_iteration
    total_steps = s.num_iterations * agent.steps_per_iteration
    temperature = lambda i: arch.inverse_temperature(
        c.arch, arch.schedule_progress(i, s.num_iterations)
    )
    try:
        while iteration < s.num_iterations:
            run_lifecycle.check_interrupt(agree)  # SIGTERM: stop between iterations
            t0 = time.time()
            inv_temp = temperature(iteration)
            # The next iteration continues this env segment: an async actor may start it.
            same_segment = (iteration + 1) % every and iteration + 1 < s.num_iterations
            state, metrics, finished = agent.run_iteration(
                actor, state, inv_temp, temperature(iteration + 1) if same_segment else None
            )
            iteration += 1
            env_steps = iteration * agent.steps_per_iteration
            if not np.isfinite(metrics.get("loss", 0.0)):
                raise NonFiniteLossError(
                    f"non-finite loss ({metrics['loss']}) at iteration {iteration}; the run "
                    f"stopped, the last good checkpoint is step {ckpt.latest_step()}"
                )
            dt = time.time() - t0
            episodes = _episode_means(finished, topo)
            row = {
                "env_steps": env_steps,
                "iteration": iteration,
                "wall_time_s": round(time.time() - t_start, 3),
                "sps": round(agent.steps_per_iteration / dt, 1),
                "episode_return_train": episodes[0][0],
                "episode_length_train": episodes[0][1],
                "inverse_temperature": float(inv_temp),
                **metrics,
            }
            if s.num_heldout:
                row["episode_return_heldout"] = episodes[1][0]
            if searching and primary:
                dist_temp = arch.distribution_inverse_temperature(c.arch, inv_temp)
                alphas = topo.to_host(state.alphas)
                row.update(arch.alpha_summary(alphas, s.ops, dist_temp))
                logger.write_tensorboard(
                    env_steps, arch.edge_probability_scalars(alphas, s.ops, dist_temp)
                )
                alpha_hist.append(
                    {
                        "env_steps": env_steps,
                        "alphas": jax.tree.map(lambda a: np.asarray(a).tolist(), alphas),
                    }
                )
            if primary and (
                iteration % c.eval.every_iterations == 0 or iteration == s.num_iterations
            ):
                row.update(
                    evaluate(
                        c,
                        eval_policy,
                        *topo.to_actor((state.params, state.alphas)),
                        inv_temp,
                        jax.random.fold_in(eval_key, iteration),
                    )
                )
            if primary:
                logger.write(row)
            if (
                searching
                and primary
                and (
                    iteration % c.log.genotype_every_iterations == 0
                    or iteration == s.num_iterations
                )
            ):
                arch_record.write_architecture(
                    workdir,
                    s,
                    topo.to_host(state.alphas),
                    env_steps,
                    arch.distribution_inverse_temperature(c.arch, inv_temp),
                    geno_hist,
                    alpha_hist,
                )
            log(
                format_progress(
                    env_steps,
                    total_steps,
                    row["sps"],
                    row["episode_return_train"],
                    time.time() - t_start,
                )
            )
            at_boundary = iteration % every == 0
            if at_boundary or iteration == s.num_iterations:
                agent.save_extra(ckpt_dir, iteration)
                ckpt.save(iteration, state, _host_state(iteration, env_steps, actor, agent, topo))
                agent.prune_extra(ckpt_dir, ckpt.all_steps())
            if at_boundary and iteration < s.num_iterations:
                actor.start_segment(iteration // every)
                agent.start_segment(c.seed, iteration // every)
    finally:
        agent.close()  # the actor thread first: it may be stepping the envs
        actor.close()
        if logger is not None:
            logger.close()
        ckpt.close()
    return {"iterations": iteration, "env_steps": env_steps, "state": state}


def _host_state(iteration: int, env_steps: int, actor: Actor, agent, topo) -> dict:
    """The JSON saved with a checkpoint; multi-host: every process's actor and agent
    state, gathered (index = process), so each resumes its own envs' statistics."""
    out = {"iteration": iteration, "env_steps": env_steps}
    mine = {"actor": actor.state_dict(), "agent": agent.state_dict()}
    if topo.process_count == 1:
        return dict(out, **mine)
    return dict(out, processes=topo.allgather_json(mine))


def _episode_means(finished, topo) -> list[tuple[float | None, float | None]]:
    """Per env group: (mean return, mean length) of the episodes that finished this
    iteration on any process; None (an empty cell) when none did."""
    out = []
    for returns, lengths in finished:
        r = np.concatenate(returns) if returns else np.zeros(0)
        n = np.concatenate(lengths) if lengths else np.zeros(0)
        if topo.process_count == 1:
            out.append((float(r.mean()), float(n.mean())) if r.size else (None, None))
            continue
        sums = topo.allgather_json([float(r.sum()), float(n.sum()), int(r.size)])
        total_r, total_n, count = (sum(col) for col in zip(*sums))
        out.append((total_r / count, total_n / count) if count else (None, None))
    return out


def evaluate(c, policy, params, alphas, inv_temp, key) -> dict:
    """The agent's evaluation policy (PPO: stochastic; DQN: eval_epsilon-greedy) on test
    levels (all levels) and, optionally, the training levels. ``policy`` is jitted once
    per run, so evaluation compiles once per batch size."""
    act = lambda obs, k: policy(params, alphas, obs, k, inv_temp)[0]
    k_test, k_train = jax.random.split(key)
    seed = int(jax.random.randint(k_test, (), 0, 2**30))
    row = {}
    make = lambda levels, start: envs.make_procgen(
        c.env_name, c.eval.num_envs, c.distribution_mode, levels, start, seed, c.num_threads
    )
    res = envs.evaluate(act, lambda: make(0, 0), c.eval.num_episodes, k_test)
    row["episode_return_test"] = res["mean_return"]
    if c.eval.train_levels:
        res = envs.evaluate(
            act, lambda: make(c.num_levels, c.start_level), c.eval.num_episodes, k_train
        )
        row["episode_return_train_eval"] = res["mean_return"]
    return row
