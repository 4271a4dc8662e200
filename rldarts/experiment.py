"""One experiment, start to end: build, act, learn, evaluate, log, checkpoint, resume.

Shared by ``experiments.search`` (a supernet learns its alphas) and
``experiments.train`` (a fixed network from scratch). Everything that can be wrong
with the input (config, genotype file, checkpoint of another config) is checked
before the first byte is written to the workdir.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import numpy as np

from rldarts import arch, config_checks, envs, networks, visualize
from rldarts import ops as ops_lib
from rldarts.actor import Actor
from rldarts.agents import ppo
from rldarts.checkpoint import Checkpointer
from rldarts.genotypes import NetworkGenotype, discretize
from rldarts.logger import MetricsLogger, atomic_write_json, atomic_write_text, format_progress

NUM_ACTIONS = 15  # every Procgen game


class NonFiniteLossError(RuntimeError):
    pass


@dataclasses.dataclass
class Setup:
    """Everything built from a config before the workdir is touched."""
    config: object
    model: object
    ops: tuple
    alphas: dict
    mode: str
    num_heldout: int
    num_iterations: int
    steps_per_iteration: int


def build(c, require_supernet: bool) -> Setup:
    config_checks.validate(c)
    genotype = NetworkGenotype.load(c.genotype) if c.genotype else None
    torso = networks.make_torso(
        c.network, depths=tuple(c.net.depths), dense=c.net.dense,
        search_space=c.net.search_space, num_nodes=c.net.num_nodes,
        output_mode=c.net.output_mode, first_conv=c.net.first_conv, genotype=genotype)
    supernet = c.network in networks.CELL_TYPES and genotype is None
    if require_supernet and not supernet:
        raise ValueError(f"search needs a supernet: network={c.network!r}"
                         f"{' with a genotype' if genotype else ''}; use network "
                         f"darts_standard or darts_impala without a genotype")
    model = networks.Agent(torso, networks.PolicyValueHead(NUM_ACTIONS))
    ops = ops_lib.resolve_search_space(c.net.search_space)
    alphas = networks.init_network_alphas(c.network, ops, c.net.num_nodes) if supernet else {}
    mode = c.arch.mode if supernet else "frozen"
    num_heldout = arch.heldout_envs(c.arch, c.ppo.num_envs) if supernet else 0
    per_iter = c.ppo.num_envs * c.ppo.num_steps
    return Setup(c, model, ops, alphas, mode, num_heldout,
                 math.ceil(c.total_env_steps / per_iter), per_iter)


def _env_factory(c, num_heldout: int):
    """segment -> env groups: training levels, then (alternating) held-out levels."""
    def make(segment: int):
        seed = c.seed * 1_000_003 + segment  # fresh, reproducible envs per segment
        groups = [envs.make_procgen(c.env_name, c.ppo.num_envs - num_heldout,
                                    c.distribution_mode, c.num_levels, c.start_level, seed,
                                    c.num_threads)]
        if num_heldout:
            unseen = c.arch.heldout_source == "unseen_levels"
            # Unseen levels: the block right after the training levels.
            start = c.start_level + c.num_levels if unseen else c.start_level
            groups.append(envs.make_procgen(c.env_name, num_heldout, c.distribution_mode,
                                            c.num_levels, start, seed + 500_000,
                                            c.num_threads))
        return [envs.TrainingEnv(g, c.ppo.gamma, c.ppo.normalize_reward, c.ppo.reward_clip)
                for g in groups]
    return make


def _mean(values) -> float | None:
    """Mean of the episodes that finished; None (an empty cell) when none did."""
    values = np.concatenate(values) if values else np.zeros(0)
    return float(values.mean()) if values.size else None


class History:
    """Append-only JSON-lines file, truncated to a resume point."""

    def __init__(self, path: str, resume_env_steps: int | None):
        self.path = path
        lines = []
        if resume_env_steps is not None and os.path.exists(path):
            with open(path) as f:
                lines = [ln for ln in f if ln.strip()
                         and json.loads(ln)["env_steps"] <= resume_env_steps]
        atomic_write_text(path, "".join(lines))

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        with open(self.path) as f:
            return [json.loads(ln) for ln in f if ln.strip()]


def write_architecture(workdir: str, s: Setup, alphas: dict, env_steps: int,
                       inv_temp: float, genotype_history: History | None = None,
                       alpha_history: History | None = None) -> NetworkGenotype:
    """genotype.json (+ history), cell diagrams (PNG + DOT), alpha-evolution plot."""
    np_alphas = jax.tree.map(np.asarray, alphas)
    genotype = discretize(np_alphas, s.ops, s.config.arch.discretize_k, inv_temp)
    atomic_write_text(os.path.join(workdir, "genotype.json"), genotype.to_json())
    if genotype_history is not None:
        genotype_history.append({"env_steps": env_steps,
                                 "genotype": json.loads(genotype.to_json())})
    cells_dir = os.path.join(workdir, "cells")
    os.makedirs(cells_dir, exist_ok=True)
    for cell_type, cell in genotype.cells.items():
        title = f"{cell_type} cell @ {env_steps:,} steps"
        visualize.draw_genotype(cell, os.path.join(cells_dir, f"{cell_type}.png"), title)
        atomic_write_text(os.path.join(cells_dir, f"{cell_type}.dot"),
                          visualize.genotype_to_dot(cell, title))
        visualize.draw_alphas(np_alphas[cell_type], s.ops,
                              os.path.join(cells_dir, f"{cell_type}_alphas.png"), inv_temp,
                              f"{cell_type} supernet @ {env_steps:,} steps")
        atomic_write_text(os.path.join(cells_dir, f"{cell_type}_alphas.dot"),
                          visualize.alphas_to_dot(np_alphas[cell_type], s.ops, inv_temp))
    if alpha_history is not None:
        records = [(r["env_steps"], r["alphas"]) for r in alpha_history.read()]
        if records:
            visualize.plot_alpha_history(records, s.ops,
                                         os.path.join(workdir, "alpha_evolution.png"),
                                         inv_temp)
    return genotype


def run(c, workdir: str, require_supernet: bool, log=print) -> dict:
    """Trains to ``total_env_steps``; resumes from the workdir's last checkpoint."""
    s = build(c, require_supernet)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), config_checks.fingerprint(c))
    ckpt.check_fingerprint()
    start_step = ckpt.latest_step()
    key = jax.random.PRNGKey(c.seed)
    key, actor_key, eval_key = jax.random.split(key, 3)
    policy = ppo.make_policy(s.model)
    actor = Actor(_env_factory(c, s.num_heldout), policy, actor_key)
    sample_obs = np.zeros((c.ppo.num_envs, 64, 64, 3), np.uint8)
    state = ppo.init_state(s.model, c.ppo, c.arch, s.alphas, sample_obs, key,
                           s.num_iterations * c.ppo.update_epochs * c.ppo.num_minibatches)
    iteration, resume_steps = 0, None
    if start_step is not None:
        state, host = ckpt.restore(state, start_step)
        iteration, resume_steps = host["iteration"], host["env_steps"]
        actor.load_state_dict(host["actor"])
        log(f"resuming {workdir} from iteration {iteration} ({resume_steps:,} env steps)")
    update = ppo.make_update(s.model, c.ppo, _with_mode(c.arch, s.mode),
                             c.ppo.num_envs, s.num_heldout,
                             s.num_iterations * c.ppo.update_epochs * c.ppo.num_minibatches)

    os.makedirs(workdir, exist_ok=True)
    atomic_write_json(os.path.join(workdir, "config.json"), c.to_dict())
    logger = MetricsLogger(workdir, resume=start_step is not None,
                           resume_env_steps=resume_steps, tensorboard=c.log.tensorboard)
    searching = bool(s.alphas)
    alpha_hist = History(os.path.join(workdir, "alpha_history.jsonl"), resume_steps)
    geno_hist = History(os.path.join(workdir, "genotype_history.jsonl"), resume_steps)

    actor.start_segment(iteration // c.log.checkpoint_every_iterations)
    t_start = time.time()
    env_steps = iteration * s.steps_per_iteration
    T = c.ppo.num_steps
    try:
        while iteration < s.num_iterations:
            t0 = time.time()
            inv_temp = arch.inverse_temperature(c.arch, iteration / s.num_iterations)
            rollout, finished = collect_rollout(actor, state, T, inv_temp)
            state, metrics = update(state, rollout, inv_temp)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            iteration += 1
            env_steps = iteration * s.steps_per_iteration
            if not np.isfinite(metrics["loss"]):
                raise NonFiniteLossError(
                    f"non-finite loss ({metrics['loss']}) at iteration {iteration}; the run "
                    f"stopped, the last good checkpoint is step {ckpt.latest_step()}")
            dt = time.time() - t0
            row = {"env_steps": env_steps, "iteration": iteration,
                   "wall_time_s": round(time.time() - t_start, 3),
                   "sps": round(s.steps_per_iteration / dt, 1),
                   "episode_return_train": _mean([f[0][0] for f in finished]),
                   "episode_length_train": _mean([f[0][1] for f in finished]),
                   "inverse_temperature": float(inv_temp), **metrics}
            if s.num_heldout:
                row["episode_return_heldout"] = _mean([f[1][0] for f in finished])
            if searching:
                row.update(arch.alpha_summary(state.alphas, s.ops, float(inv_temp)))
                logger.write_tensorboard(env_steps, arch.edge_probability_scalars(
                    state.alphas, s.ops, float(inv_temp)))
                alpha_hist.append({"env_steps": env_steps, "alphas": jax.tree.map(
                    lambda a: np.asarray(a).tolist(), state.alphas)})
            if iteration % c.eval.every_iterations == 0 or iteration == s.num_iterations:
                row.update(evaluate(c, actor.policy, state, inv_temp,
                                    jax.random.fold_in(eval_key, iteration)))
            logger.write(row)
            if searching and (iteration % c.log.genotype_every_iterations == 0
                              or iteration == s.num_iterations):
                write_architecture(workdir, s, state.alphas, env_steps, float(inv_temp),
                                   geno_hist, alpha_hist)
            log(format_progress(env_steps, s.num_iterations * s.steps_per_iteration,
                                row["sps"], row["episode_return_train"],
                                time.time() - t_start))
            at_boundary = iteration % c.log.checkpoint_every_iterations == 0
            if at_boundary or iteration == s.num_iterations:
                ckpt.save(iteration, state, {"iteration": iteration, "env_steps": env_steps,
                                             "actor": actor.state_dict()})
            if at_boundary and iteration < s.num_iterations:
                actor.start_segment(iteration // c.log.checkpoint_every_iterations)
    finally:
        actor.close()
        logger.close()
        ckpt.close()
    return {"iterations": iteration, "env_steps": env_steps, "state": state}


def _with_mode(arch_cfg, mode: str):
    cfg = arch_cfg.copy_and_resolve_references()
    cfg.mode = mode
    return cfg


def collect_rollout(actor: Actor, state, num_steps: int, inv_temp):
    """num_steps of acting with the current params; time-major arrays for ``update``."""
    obs, actions, log_probs, values, rewards, dones = [], [], [], [], [], []
    finished = [([], []) for _ in actor.envs]
    for _ in range(num_steps):
        a, extras = actor.act(state.params, state.alphas, inv_temp)
        o, r, d, fin = actor.step(a)
        obs.append(o)
        actions.append(a)
        log_probs.append(extras["log_probs"])
        values.append(extras["values"])
        rewards.append(r)
        dones.append(d)
        for g, (f_ret, f_len) in enumerate(fin):
            finished[g][0].append(f_ret)
            finished[g][1].append(f_len)
    rollout = {"obs": np.stack(obs), "actions": np.stack(actions),
               "log_probs": np.stack(jax.device_get(log_probs)),
               "values": np.stack(jax.device_get(values)),
               "rewards": np.stack(rewards), "dones": np.stack(dones),
               "last_obs": actor.obs}
    return rollout, finished


def evaluate(c, policy, state, inv_temp, key) -> dict:
    """Stochastic policy on test levels (all levels) and, optionally, training levels.

    ``policy`` is the actor's jitted policy, so evaluation compiles once per batch size.
    """
    act = lambda obs, k: policy(state.params, state.alphas, obs, k, inv_temp)[0]
    k_test, k_train = jax.random.split(key)
    seed = int(jax.random.randint(k_test, (), 0, 2**30))
    row = {}
    make = lambda levels, start: envs.make_procgen(
        c.env_name, c.eval.num_envs, c.distribution_mode, levels, start, seed, c.num_threads)
    res = envs.evaluate(act, lambda: make(0, 0), c.eval.num_episodes, k_test)
    row["episode_return_test"] = res["mean_return"]
    if c.eval.train_levels:
        res = envs.evaluate(act, lambda: make(c.num_levels, c.start_level),
                            c.eval.num_episodes, k_train)
        row["episode_return_train_eval"] = res["mean_return"]
    return row
