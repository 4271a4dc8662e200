"""DQN throughput: acting env steps/s, learner updates/s, replay memory per transition.

For the DQN defaults (64 envs, batch 256, C51 51 atoms, dueling hidden 512) it prints
JSON per network: the acting rate (jitted epsilon-greedy forward at batch num_envs plus
one EnvPool Procgen step), the learner rate (one jitted double-Q C51 step on a replay
batch, three forward passes and one backward), the env steps/s these imply at the
configured samples-per-insert ratio, and the replay's bytes per transition (frames are
stored once).

    .venv/bin/python -m benchmarks.dqn_throughput [--networks impala,cpu_demo,paper]
"""
import argparse
import json
import time

import jax
import numpy as np

from experiments.configs import base
from rldarts import envs, experiment
from rldarts.replay import PrioritizedReplay
from benchmarks.ppo_throughput import network_config


def bench(name, args):
    c = network_config(name, base.get_base_config())
    c.agent = "dqn"
    c.env_name = args.game
    c.dqn.replay_capacity = args.capacity
    s = experiment.build(c, require_supernet=False)
    agent, d = s.agent, c.dqn
    n, B = d.num_envs, d.batch_size
    key = jax.random.PRNGKey(0)
    obs = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    state = agent.init_state(s.alphas, obs, key)
    policy = jax.jit(agent.policy)
    venv = envs.make_procgen(args.game, n)
    o = venv.reset()
    jax.block_until_ready(policy(state.params, state.alphas, o, key, 1.0))
    t0 = time.perf_counter()
    for _ in range(args.act_steps):
        a, _ = policy(state.params, state.alphas, o, key, 1.0)
        o, *_ = venv.step(np.asarray(a))
    act_sps = n * args.act_steps / (time.perf_counter() - t0)
    venv.close()

    batch = {"obs": np.repeat(obs, B // n + 1, 0)[:B], "next_obs": np.repeat(obs, B // n + 1, 0)[:B],
             "actions": np.zeros(B, np.int32), "rewards": np.full(B, 0.1, np.float32),
             "discounts": np.full(B, 0.99 ** d.n_step, np.float32),
             "weights": np.ones(B, np.float32)}
    step = agent.learner.step
    t0 = time.perf_counter()
    jax.block_until_ready(step(state, batch, None, 1.0)[1]["loss"])
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.learner_steps):
        state, m = step(state, batch, None, 1.0)
        jax.block_until_ready(m["loss"])
    updates_per_s = args.learner_steps / (time.perf_counter() - t0)
    # Inserting one transition costs samples_per_insert / B learner steps.
    implied = 1.0 / (1.0 / act_sps + d.samples_per_insert / (B * updates_per_s))
    per_transition = PrioritizedReplay.estimate_bytes(500_000, (64, 64, 3), np.uint8, n) / 500_000
    return {"network": name, "num_envs": n, "batch": B,
            "acting_env_steps_per_s": round(act_sps, 1),
            "learner_compile_s": round(compile_s, 2),
            "learner_updates_per_s": round(updates_per_s, 2),
            "samples_per_insert": d.samples_per_insert,
            "implied_env_steps_per_s": round(implied, 1),
            "replay_bytes_per_transition": round(per_transition, 1),
            "replay_gb_at_500k": round(per_transition * 500_000 / 1e9, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--networks", default="impala,cpu_demo,paper")
    ap.add_argument("--game", default="starpilot")
    ap.add_argument("--capacity", type=int, default=100_000)
    ap.add_argument("--act-steps", type=int, default=20)
    ap.add_argument("--learner-steps", type=int, default=2)
    args = ap.parse_args()
    result = {"device": str(jax.devices()[0]), "jax": jax.__version__, "runs": []}
    for name in args.networks.split(","):
        result["runs"].append(bench(name, args))
        print(json.dumps(result["runs"][-1]), flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
