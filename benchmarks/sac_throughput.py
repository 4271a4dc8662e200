"""SAC on DM-Control from pixels: env agent steps/s (render included) and learner
updates/s per encoder, printed as JSON lines.

* env: ``DMCVecEnv`` of ``--task`` stepped with uniform random actions; agent steps/s and
  frames/s (= agent steps x action repeat, the unit DrQ's curves use).
* updates: one jitted SAC step (critic + encoder through ``arch.make_arch_step``, actor,
  temperature, target EMA) on a random replay batch at the ``dmc`` preset's settings
  (batch ``--batch-size``, hidden 1024), for ``drq`` (frozen) and the ``darts_dmc``
  supernet (joint mode: the alphas step too).

    .venv/bin/python -m benchmarks.sac_throughput [--task cartpole_swingup]
        [--networks drq,darts_dmc] [--batch-size 512] [--steps 5]
"""

import argparse
import json
import time

import jax
import numpy as np

from experiments.configs import base
from rldarts.env import dmc
from rldarts.run import setup


def bench_env(task: str, num_envs: int, steps: int) -> dict:
    venv = dmc.DMCVecEnv(f"dmc/{task}", num_envs, seed=0)
    venv.reset()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        venv.step(rng.uniform(-1, 1, (num_envs, venv.action_dim)))
    rate = steps * num_envs / (time.perf_counter() - t0)
    venv.close()
    repeat = dmc.TASKS[task].action_repeat
    return {
        "task": task,
        "num_envs": num_envs,
        "agent_steps_per_s": round(rate, 1),
        "frames_per_s": round(rate * repeat, 1),
    }


def bench_updates(network: str, task: str, batch: int, steps: int) -> dict:
    c = base.build("dmc", network=network, env_name=f"dmc/{task}")
    c.sac.batch_size = batch
    c.sac.replay_capacity = 10_000
    if network == "drq":
        c.arch.mode = "frozen"
    s = setup.build(c, require_supernet=False)
    agent = s.agent
    rng = np.random.default_rng(0)
    obs = lambda: rng.integers(0, 256, (batch, *dmc.OBSERVATION_SHAPE), dtype=np.uint8)
    batch_ = {
        "obs": obs(),
        "next_obs": obs(),
        "actions": rng.uniform(-1, 1, (batch, agent.action_dim)).astype(np.float32),
        "rewards": rng.uniform(0, 1, batch).astype(np.float32),
        "discounts": np.full(batch, 0.99, np.float32),
    }
    state = agent.init_state(s.alphas, batch_["obs"][:1], jax.random.PRNGKey(0))
    step = agent.learner.step
    t0 = time.perf_counter()
    state, m = step(state, batch_, batch_, 1.0)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = step(state, batch_, batch_, 1.0)
    jax.block_until_ready(m)
    per = (time.perf_counter() - t0) / steps
    return {
        "network": network,
        "mode": s.config.arch.mode,
        "batch": batch,
        "update_s": round(per, 3),
        "updates_per_s": round(1 / per, 3),
        "first_call_s": round(compile_s, 1),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cartpole_swingup", choices=tuple(dmc.TASKS))
    p.add_argument("--networks", default="drq,darts_dmc")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--env-steps", type=int, default=200)
    p.add_argument("--num-envs", default="1,4")
    args = p.parse_args()
    for n in map(int, args.num_envs.split(",")):
        print(json.dumps(bench_env(args.task, n, args.env_steps)), flush=True)
    for network in args.networks.split(","):
        print(
            json.dumps(bench_updates(network, args.task, args.batch_size, args.steps)), flush=True
        )


if __name__ == "__main__":
    main()
