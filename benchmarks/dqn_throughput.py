"""DQN throughput: acting env steps/s, learner updates/s, replay memory per transition.

For the DQN defaults (64 envs, batch 256, C51 51 atoms, dueling hidden 512) it prints
JSON per network: the acting rate (jitted epsilon-greedy forward at batch num_envs plus
one EnvPool Procgen step), the learner rate (one jitted double-Q C51 step on a replay
batch, three forward passes and one backward), the env steps/s these imply at the
configured samples-per-insert ratio, and the replay's bytes per transition (frames are
stored once).

``--devices 1,2,4`` repeats the figures with the learner step data-parallel over the
first N local devices (``parallel.learner_devices=N``, ``all`` = every device; the
batch sharded, the state replicated). On a CPU, forced devices
(``JAX_NUM_CPU_DEVICES``) share the same cores: overhead, not speedup.

    .venv/bin/python -m benchmarks.dqn_throughput [--networks impala,cpu_demo,paper]
"""

import argparse
import json
import time

import jax
import numpy as np

from benchmarks.ppo_throughput import NET_SIZES, network_config, parse_devices
from experiments.configs import base
from rldarts.env import envs
from rldarts.learn.replay import PrioritizedReplay
from rldarts.run import setup


def bench(name, args, learner_devices=1):
    c = network_config(name, base.get_base_config(), args.net_size)
    c.agent = "dqn"
    c.env_name = args.game
    c.dqn.replay_capacity = args.capacity
    if args.num_envs:
        c.dqn.num_envs = args.num_envs
    if args.batch_size:
        c.dqn.batch_size = args.batch_size
    c.parallel.learner_devices = learner_devices
    s = setup.build(c, require_supernet=False)
    agent, d, topology = s.agent, c.dqn, s.topology
    n, B = d.num_envs, d.batch_size
    key = jax.random.PRNGKey(0)
    obs = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    state = agent.init_state(s.alphas, obs, key)
    policy = jax.jit(agent.policy, static_argnames="group")
    acting = (
        topology.to_actor((state.params, state.alphas))
        if not topology.trivial
        else (state.params, state.alphas)
    )
    venv = envs.make_procgen(args.game, n)
    o = venv.reset()
    jax.block_until_ready(policy(*acting, topology.place_obs(o), key, 1.0))
    t0 = time.perf_counter()
    for _ in range(args.act_steps):
        a, _ = policy(*acting, topology.place_obs(o), key, 1.0)
        o, *_ = venv.step(np.asarray(a))
    act_sps = n * args.act_steps / (time.perf_counter() - t0)
    venv.close()

    frames = np.repeat(obs, B // n + 1, 0)[:B]
    batch = {
        "obs": frames,
        "next_obs": frames,
        "actions": np.zeros(B, np.int32),
        "rewards": np.full(B, 0.1, np.float32),
        "discounts": np.full(B, 0.99**d.n_step, np.float32),
        "weights": np.ones(B, np.float32),
    }
    batch = topology.shard_batch(batch)  # the learner's own placement (host if trivial)
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
    return {
        "network": name,
        "num_envs": n,
        "batch": B,
        "learner_devices": topology.num_learner_devices,
        "acting_env_steps_per_s": round(act_sps, 1),
        "learner_compile_s": round(compile_s, 2),
        "learner_updates_per_s": round(updates_per_s, 2),
        "learner_samples_per_s": round(updates_per_s * B, 1),
        "samples_per_insert": d.samples_per_insert,
        "implied_env_steps_per_s": round(implied, 1),
        "replay_bytes_per_transition": round(per_transition, 1),
        "replay_gb_at_500k": round(per_transition * 500_000 / 1e9, 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default="impala,cpu_demo,paper")
    ap.add_argument("--game", default="starpilot")
    ap.add_argument("--capacity", type=int, default=100_000)
    ap.add_argument("--num-envs", type=int, default=0, help="dqn.num_envs; 0 = 64")
    ap.add_argument("--batch-size", type=int, default=0, help="dqn.batch_size; 0 = 256")
    ap.add_argument(
        "--net-size",
        default="default",
        choices=NET_SIZES,
        help="smoke: the smoke preset's widths/nodes/op set for every case",
    )
    ap.add_argument("--act-steps", type=int, default=20)
    ap.add_argument("--learner-steps", type=int, default=2)
    ap.add_argument(
        "--devices",
        type=parse_devices,
        default=None,
        help="learner device counts, e.g. 1,all (default 1); on CPU forced "
        "devices (JAX_NUM_CPU_DEVICES) share the cores",
    )
    ap.add_argument("--out", default="", help="also write the final JSON to this file")
    args = ap.parse_args()
    counts = []
    for requested in args.devices or [1]:
        count = requested or jax.local_device_count()
        if count not in counts:
            counts.append(count)
    result = {
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_count": jax.local_device_count(),
        "runs": [],
    }
    for name in args.networks.split(","):
        for count in counts:
            try:
                run = bench(name, args, count)
            except ValueError as e:  # e.g. a batch that does not divide over the devices
                run = {"network": name, "learner_devices": count, "error": str(e)}
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
