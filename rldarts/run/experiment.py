"""One experiment, start to end, as the paper's loop: act, learn, evaluate, record,
checkpoint; resumed from the workdir's last checkpoint.

Shared by ``experiments.search`` (a supernet learns its alphas) and
``experiments.train`` (a fixed network from scratch). ``setup.build`` checks everything
that can be wrong with the input before the first byte is written to the workdir;
``recorder`` holds every write but the checkpoints (process 0 only).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from rldarts.env import families
from rldarts.learn import arch, parallel
from rldarts.learn.actor import Actor
from rldarts.run import checkpoint, config_checks, run_lifecycle
from rldarts.run.checkpoint import Checkpointer
from rldarts.run.recorder import NullRecorder, Recorder
from rldarts.run.setup import Setup, build, env_factory


class NonFiniteLossError(RuntimeError):
    pass


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
    # A resume of another config is refused before the workdir is taken (nothing written).
    checkpoint.check_fingerprint(_checkpoint_dir(workdir), config_checks.fingerprint(s.config))
    agree = s.topology.allgather_json if s.topology.process_count > 1 else None
    with (
        run_lifecycle.exclusive(workdir, s.topology.process_index, agree),
        run_lifecycle.stop_on_signals(),
    ):
        return _train(s, workdir, log or (lambda line: print(line, flush=True)), agree)


def _train(s: Setup, workdir: str, log, agree) -> dict:
    c, agent, topo = s.config, s.agent, s.topology
    ckpt = Checkpointer(_checkpoint_dir(workdir), config_checks.fingerprint(c))
    ckpt.check_fingerprint()
    actor, state, iteration, resumed, eval_key = _start(s, ckpt, workdir, log)
    recorder = Recorder(s, workdir, resumed, eval_key, log) if topo.is_primary else NullRecorder()
    every = c.log.checkpoint_every_iterations
    _start_segment(s, actor, iteration // every)
    if iteration == 0 and c.eval.at_start:
        recorder.record_untrained(state, _temperature(s, 0))
    t_start = time.time()
    try:
        while iteration < s.num_iterations:
            run_lifecycle.check_interrupt(agree)  # SIGTERM: stop between iterations
            t0 = time.time()
            inv_temp = _temperature(s, iteration)
            # The next iteration continues this env segment: an async actor may start it.
            same_segment = (iteration + 1) % every and iteration + 1 < s.num_iterations
            next_temp = _temperature(s, iteration + 1) if same_segment else None
            state, metrics, finished = agent.run_iteration(actor, state, inv_temp, next_temp)
            iteration += 1
            _check_finite(metrics, iteration, ckpt)
            row = _row(s, iteration, metrics, _episode_means(finished, topo), inv_temp)
            row["wall_time_s"] = round(time.time() - t_start, 3)
            row["sps"] = round(agent.steps_per_iteration / (time.time() - t0), 1)
            recorder.record(iteration, row, state, inv_temp)  # + evaluation, on process 0
            if iteration % every == 0 or iteration == s.num_iterations:
                _checkpoint(s, ckpt, actor, state, iteration)
                if iteration < s.num_iterations:
                    _start_segment(s, actor, iteration // every)
    finally:
        agent.close()  # the actor thread first: it may be stepping the envs
        actor.close()
        recorder.close()
        ckpt.close()
    return {
        "iterations": iteration,
        "env_steps": iteration * agent.steps_per_iteration,
        "state": state,
    }


def _checkpoint_dir(workdir: str) -> str:
    return os.path.join(workdir, "checkpoints")


def _start(s: Setup, ckpt: Checkpointer, workdir: str, log):
    """The actor and the learner state, fresh or from the last checkpoint: (actor, state,
    iteration, the checkpoint's env steps or None, the evaluation key)."""
    c, agent, topo = s.config, s.agent, s.topology
    key = jax.random.PRNGKey(c.seed)
    key, actor_key, eval_key = jax.random.split(key, 3)
    if topo.process_index:
        actor_key = jax.random.fold_in(actor_key, topo.process_index)
    actor = Actor(env_factory(c, agent, s.num_heldout, topo), agent.policy, actor_key, topo)
    env = families.spec(c.env_name)
    sample_obs = np.zeros(
        (topo.local_share(agent.num_envs), *env.observation_shape), env.observation_dtype
    )
    state = agent.init_state(s.alphas, sample_obs, key)
    step = ckpt.latest_step()
    if step is None:
        return actor, state, 0, None, eval_key
    state, host = ckpt.restore(state, step)
    mine = host["processes"][topo.process_index] if "processes" in host else host
    actor.load_state_dict(mine["actor"])
    agent.load_state_dict(mine["agent"])
    note = agent.load_extra(ckpt.directory, step)
    if topo.is_primary:
        log(
            f"resuming {workdir} from iteration {host['iteration']} "
            f"({host['env_steps']:,} env steps)" + (f"; {note}" if note else "")
        )
    return actor, state, host["iteration"], host["env_steps"], eval_key


def _temperature(s: Setup, iteration: int):
    progress = arch.schedule_progress(iteration, s.num_iterations)
    return arch.inverse_temperature(s.config.arch, progress)


def _start_segment(s: Setup, actor: Actor, segment: int) -> None:
    """Fresh envs (see WORKSPACE.md, Resume) and the agent's per-segment bookkeeping."""
    actor.start_segment(segment)
    s.agent.start_segment(s.config.seed, segment)


def _check_finite(metrics: dict, iteration: int, ckpt: Checkpointer) -> None:
    if not np.isfinite(metrics.get("loss", 0.0)):
        raise NonFiniteLossError(
            f"non-finite loss ({metrics['loss']}) at iteration {iteration}; the run "
            f"stopped, the last good checkpoint is step {ckpt.latest_step()}"
        )


def _checkpoint(s: Setup, ckpt: Checkpointer, actor: Actor, state, iteration: int) -> None:
    env_steps = iteration * s.agent.steps_per_iteration
    s.agent.save_extra(ckpt.directory, iteration)
    ckpt.save(iteration, state, _host_state(iteration, env_steps, actor, s.agent, s.topology))
    s.agent.prune_extra(ckpt.directory, ckpt.all_steps())


def _row(s: Setup, iteration: int, metrics: dict, episodes, inv_temp) -> dict:
    """The iteration's metrics row; the timing columns are filled in by the loop."""
    row = {
        "env_steps": iteration * s.agent.steps_per_iteration,
        "iteration": iteration,
        "wall_time_s": None,
        "sps": None,
        "episode_return_train": episodes[0][0],
        "episode_length_train": episodes[0][1],
        "inverse_temperature": float(inv_temp),
        **metrics,
    }
    if s.num_heldout:
        row["episode_return_heldout"] = episodes[1][0]
    return row


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
