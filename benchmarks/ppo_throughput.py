"""PPO throughput on Procgen: env-only, compute bound and full loop, per network.

For the Procgen defaults (64 envs x 256 steps, 8 minibatches, 3 epochs) it prints JSON:
* env_only_sps: EnvPool Procgen with random actions;
* compute_bound_sps: env steps/s implied by timing only the jitted acting forward pass
  (batch num_envs) and one jitted minibatch optimisation step (fwd+bwd+Adam), scaled to
  a whole iteration: T*N / (T*t_act + epochs*minibatches*t_step);
* full_loop_sps: whole iterations of the real loop (`collect_rollout` + `update`), for
  networks cheap enough to run them here (--full-loop-networks), with the update loop
  `--update-loop` picks (`ppo.update_loop`; auto: host on CPU, one `lax.scan` on
  accelerators). The compute bound always times the host loop's minibatch step.

The paper-size supernet is meant for accelerators: on a CPU only a few acting and update
steps are timed. Run with a smaller --num-steps to shorten full-loop iterations.

    .venv/bin/python -m benchmarks.ppo_throughput [--networks impala,cpu_demo,paper]
"""
import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np

from experiments.configs import base
from rldarts import arch, envs, experiment, networks, random_search
from rldarts import conv as conv_lib
from rldarts.actor import Actor
from rldarts.agents import ppo


def env_only_sps(game, num_envs, steps=300):
    venv = envs.make_procgen(game, num_envs)
    venv.reset()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        venv.step(rng.integers(0, 15, num_envs))
    venv.close()
    return num_envs * steps / (time.perf_counter() - t0)


# Network cases: IMPALA-CNN, the cpu_demo supernet, and the paper-size supernet
# (DartsStandardCNN 16/32/32, 4 nodes, rl_darts_conv) searched with each arch.method or
# trained as a discretized cell (a fixed random genotype of that space: what a
# retrain costs).
CASES = ("impala", "cpu_demo", "paper", "paper_gdas", "paper_pc_darts", "paper_fixed")


def network_config(name, c):
    if name not in CASES:
        raise ValueError(f"unknown network case {name!r}; valid: {', '.join(CASES)}")
    if name == "impala":
        c.network = "impala"
        c.arch.mode = "frozen"
    elif name == "cpu_demo":
        demo = base.cpu_demo(base.get_base_config())
        c.net = demo.net
    elif name in ("paper_gdas", "paper_pc_darts"):
        c.arch.method = name[len("paper_"):]
    elif name == "paper_fixed":
        genotype = random_search.sample_network_genotype(
            networks.CELL_TYPES[c.network], c.net.search_space, c.net.num_nodes,
            c.arch.discretize_k, seed=0, index=0)
        path = os.path.join(tempfile.mkdtemp(), "genotype.json")
        with open(path, "w") as f:
            f.write(genotype.to_json())
        c.genotype = path
    return c


def bench(name, args):
    c = network_config(name, base.get_base_config())
    c.env_name = args.game
    c.ppo.num_steps = args.num_steps
    c.ppo.microbatch_size = args.microbatch_size
    c.ppo.update_loop = args.update_loop
    s = experiment.build(c, require_supernet=False)
    agent, model = s.agent, s.agent.model
    n, T = c.ppo.num_envs, c.ppo.num_steps
    key = jax.random.PRNGKey(0)
    policy = jax.jit(agent.policy)
    obs = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    num_updates = 10
    state = agent.init_state(s.alphas, obs, key)
    out = {"network": name, "num_envs": n, "num_steps": T,
           "minibatch": n * T // c.ppo.num_minibatches, "epochs": c.ppo.update_epochs}

    t0 = time.perf_counter()
    jax.block_until_ready(policy(state.params, state.alphas, obs, key, 1.0))
    out["compile_act_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    reps = args.act_repeats
    for _ in range(reps):
        jax.block_until_ready(policy(state.params, state.alphas, obs, key, 1.0))
    t_act = (time.perf_counter() - t0) / reps

    # One minibatch step, exactly as the learner runs it (microbatched on CPU unless
    # --microbatch-size says otherwise).
    weight_opt = ppo.make_weight_optimizer(c.ppo, num_updates)
    alpha_opt = arch.make_alpha_optimizer(c.arch, weight_opt)
    mb = out["minibatch"]
    # --split-batch-norm: the step as before issue 10 (batch statistics over the CPU
    # slices and parts), for the A/B of its cost.
    batch_stats = networks.uses_batch_statistics(c.network) and not args.split_batch_norm
    out["microbatch"] = ppo.microbatch_size(c.ppo.microbatch_size, [mb], batch_stats) or mb
    batch = {"obs": np.repeat(obs, mb // n + 1, axis=0)[:mb],
             "actions": np.zeros(mb, np.int32), "log_probs": np.full(mb, -2.7, np.float32),
             "values": np.zeros(mb, np.float32), "advantages": np.ones(mb, np.float32),
             "returns": np.ones(mb, np.float32)}
    batch = jax.device_put(batch)
    step = ppo.make_minibatch_step(model, c.ppo, agent.arch_cfg, weight_opt, alpha_opt, [mb],
                                   "host", batch_stats)
    args_ = (state.arch_state, batch, None, 1.0, key)  # key: a sampled supernet's draw
    t0 = time.perf_counter()
    jax.block_until_ready(step(*args_))
    out["compile_step_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    for _ in range(args.step_repeats):
        jax.block_until_ready(step(*args_))
    t_step = (time.perf_counter() - t0) / args.step_repeats
    t_iter = T * t_act + c.ppo.update_epochs * c.ppo.num_minibatches * t_step
    out.update(act_ms=round(1000 * t_act, 2), minibatch_step_s=round(t_step, 3),
               compute_bound_sps=round(n * T / t_iter, 1))

    if name in args.full_loop_networks.split(","):
        actor = Actor(experiment._env_factory(c, agent, 0), agent.policy, key)
        actor.start_segment(0)
        state, _, _ = agent.run_iteration(actor, state, 1.0)  # warm-up + compile
        t0 = time.perf_counter()
        for _ in range(args.iterations):
            state, _, _ = agent.run_iteration(actor, state, 1.0)
        actor.close()
        full = n * T * args.iterations / (time.perf_counter() - t0)
        out.update(update_loop=ppo.update_loop(c.ppo.update_loop),
                   full_loop_sps=round(full, 1),
                   full_loop_over_compute_bound=round(full / out["compute_bound_sps"], 3))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--networks", default="impala,cpu_demo,paper")
    ap.add_argument("--full-loop-networks", default="impala,cpu_demo")
    ap.add_argument("--game", default="starpilot")
    ap.add_argument("--num-steps", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--act-repeats", type=int, default=10)
    ap.add_argument("--step-repeats", type=int, default=2)
    ap.add_argument("--conv-max-chunks", type=int, default=conv_lib.MAX_CHUNKS,
                    help="rldarts.conv.MAX_CHUNKS; 1 = XLA's own conv weight gradient")
    ap.add_argument("--conv-chunk", type=int, default=conv_lib.CHUNK,
                    help="rldarts.conv.CHUNK: samples per weight-gradient chunk")
    ap.add_argument("--cpu-parts", type=int, default=ppo.CPU_PARTS,
                    help="ppo.CPU_PARTS: independent gradients per jitted microbatch call")
    ap.add_argument("--microbatch-size", type=int, default=0,
                    help="ppo.microbatch_size; 0 = auto (256 on CPU), or the minibatch "
                         "size for one jitted step per minibatch")
    ap.add_argument("--split-batch-norm", action="store_true",
                    help="time the minibatch step of batch-norm networks in 256-sample "
                         "slices of 4 parts (before issue 10: not the same update)")
    ap.add_argument("--update-loop", default="auto", choices=ppo.UPDATE_LOOPS,
                    help="ppo.update_loop of the full loop")
    args = ap.parse_args()
    conv_lib.MAX_CHUNKS, conv_lib.CHUNK = args.conv_max_chunks, args.conv_chunk
    ppo.CPU_PARTS = args.cpu_parts
    result = {"device": str(jax.devices()[0]), "jax": jax.__version__,
              "conv_chunk": conv_lib.CHUNK, "conv_max_chunks": conv_lib.MAX_CHUNKS,
              "microbatch_size": args.microbatch_size, "cpu_parts": ppo.CPU_PARTS,
              "env_only_sps_64envs": round(env_only_sps(args.game, 64), 1), "runs": []}
    print(json.dumps({"env_only_sps_64envs": result["env_only_sps_64envs"]}), flush=True)
    for name in args.networks.split(","):
        result["runs"].append(bench(name, args))
        print(json.dumps(result["runs"][-1]), flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
