"""Everything a run writes besides its checkpoints, in one object: ``config.json``, the
metrics rows (CSV + TensorBoard), the evaluation episodes, the alpha and genotype
histories, the architecture record and the progress line.

Multi-host runs: process 0 holds a ``Recorder``; every other process a ``NullRecorder``
that does nothing, so the run loop has no per-process branches. Evaluation runs here
because only process 0 evaluates (its episodes are not part of any collective).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from rldarts.common.files import atomic_write_json
from rldarts.env import envs, families
from rldarts.learn import arch
from rldarts.run import arch_record
from rldarts.run.logger import MetricsLogger, format_progress
from rldarts.run.setup import Setup


class Recorder:
    """Process 0's writer. ``resume_env_steps``: the checkpoint's env steps (histories and
    metrics are cut back to it), None on a fresh start."""

    def __init__(self, s: Setup, workdir: str, resume_env_steps: int | None, eval_key, log):
        c = s.config
        self.s, self.workdir, self.eval_key, self.log = s, workdir, eval_key, log
        self.eval_policy = jax.jit(s.agent.eval_policy)  # compiled once per batch size
        self.t_start = time.time()
        os.makedirs(workdir, exist_ok=True)
        atomic_write_json(os.path.join(workdir, "config.json"), c.to_dict())
        self.logger = MetricsLogger(
            workdir,
            resume=resume_env_steps is not None,
            resume_env_steps=resume_env_steps,
            tensorboard=c.log.tensorboard,
        )
        history = lambda name: arch_record.History(os.path.join(workdir, name), resume_env_steps)
        self.alpha_hist = history("alpha_history.jsonl") if s.alphas else None
        self.geno_hist = history("genotype_history.jsonl") if s.alphas else None

    def record(self, iteration: int, row: dict, state, inv_temp) -> None:
        """Adds the alpha summary and (when due) the evaluation to ``row``, writes it,
        then the architecture record (when due) and the progress line."""
        c, s, env_steps = self.s.config, self.s, row["env_steps"]
        last = iteration == s.num_iterations
        dist_temp = arch.distribution_inverse_temperature(c.arch, inv_temp)
        alphas = s.topology.to_host(state.alphas) if s.alphas else None
        if alphas is not None:
            row.update(arch.alpha_summary(alphas, s.ops, dist_temp))
            self.logger.write_tensorboard(
                env_steps, arch.edge_probability_scalars(alphas, s.ops, dist_temp)
            )
            as_lists = jax.tree.map(lambda a: np.asarray(a).tolist(), alphas)
            self.alpha_hist.append({"env_steps": env_steps, "alphas": as_lists})
        if iteration % c.eval.every_iterations == 0 or last:
            row.update(self._evaluate(iteration, state, inv_temp))
        self.logger.write(row)
        if alphas is not None and (iteration % c.log.genotype_every_iterations == 0 or last):
            arch_record.write_architecture(
                self.workdir, s, alphas, env_steps, dist_temp, self.geno_hist, self.alpha_hist
            )
        total_steps = s.num_iterations * s.agent.steps_per_iteration
        elapsed = time.time() - self.t_start
        self.log(
            format_progress(
                env_steps, total_steps, row["sps"], row["episode_return_train"], elapsed
            )
        )

    def record_untrained(self, state, inv_temp) -> None:
        """``eval.at_start``: the untrained agent's evaluation as a row at env step 0."""
        row = {"iteration": 0, "env_steps": 0}
        row.update(self._evaluate(0, state, inv_temp))
        self.logger.write(row)
        self.log(f"untrained agent: test return {row['episode_return_test']:.3f}")

    def _evaluate(self, iteration: int, state, inv_temp) -> dict:
        # Iteration i's key: the same episodes on a resume (iteration 0: before training).
        params, eval_alphas = self.s.topology.to_actor((state.params, state.alphas))
        key = jax.random.fold_in(self.eval_key, iteration)
        return evaluate(self.s.config, self.eval_policy, params, eval_alphas, inv_temp, key)

    def close(self) -> None:
        self.logger.close()


class NullRecorder:
    """What every process but process 0 holds: the same calls, no effects."""

    def record(self, iteration: int, row: dict, state, inv_temp) -> None:
        pass

    def record_untrained(self, state, inv_temp) -> None:
        pass

    def close(self) -> None:
        pass


def evaluate(c, policy, params, alphas, inv_temp, key) -> dict:
    """The agent's evaluation policy (PPO: stochastic; DQN: eval_epsilon-greedy) on test
    levels (all levels) and, optionally, the training levels. Families without levels
    (MinAtar) play fresh env seeds in both: the same distribution twice."""
    act = lambda obs, k: policy(params, alphas, obs, k, inv_temp)[0]
    k_test, k_train = jax.random.split(key)
    seed = int(jax.random.randint(k_test, (), 0, 2**30))
    row = {}
    make = lambda levels, start: families.make_env(
        c.env_name, c.eval.num_envs, seed, levels, start, c.distribution_mode, c.num_threads
    )
    res = envs.evaluate(act, lambda: make(0, 0), c.eval.num_episodes, k_test)
    row["episode_return_test"] = res["mean_return"]
    if c.eval.train_levels:
        res = envs.evaluate(
            act, lambda: make(c.num_levels, c.start_level), c.eval.num_episodes, k_train
        )
        row["episode_return_train_eval"] = res["mean_return"]
    return row
