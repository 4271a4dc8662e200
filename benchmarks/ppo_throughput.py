"""PPO throughput on Procgen: env-only, compute bound and full loop, per network and
per number of learner devices.

For the Procgen defaults (64 envs x 256 steps, 8 minibatches, 3 epochs) it prints JSON:
* env_only_sps: EnvPool Procgen with random actions;
* act_ms: one jitted acting forward pass at batch num_envs (sharded over the actor's
  devices);
* minibatch_step_s: one jitted minibatch optimisation step (fwd+bwd+Adam) as the host
  loop runs it (microbatched on one CPU device), the minibatch sharded over the learner
  devices;
* compute_bound_sps: env steps/s implied by those two, scaled to a whole iteration:
  T*N / (T*t_act + epochs*minibatches*t_step);
* update_s: one whole PPO update, ``ppo.Agent._update`` (GAE + epochs x minibatches in
  the loop ``--update-loop`` picks: auto = host on CPU, one jitted ``lax.scan`` on
  accelerators) on a synthetic rollout: the most faithful learner figure.
  update_bound_sps = T*N / (T*t_act + update_s) (and update_only_sps = T*N / update_s,
  the learner's rate alone: the bound of an async actor that hides acting fully);
* full_loop_sps: whole iterations of the real loop (EnvPool Procgen envs +
  ``ppo.Agent.run_iteration``), for the networks in --full-loop-networks. With
  --async-actor the agent's actor thread collects the next rollout while the learner
  updates (``parallel.async_actor``); the timed iterations all prefetch (policy_lag 1).

Devices: ``--devices 1,2,4`` repeats every figure with a ``parallel.Topology`` of the
first N local devices (config ``parallel.learner_devices=N``; ``all`` = every free
device, the largest count the batch sizes divide by). With --async-actor the actor
acts on --actor-devices and the learner takes the other devices (all of them if none is
left). A ``scaling`` table per network closes the output. Several learner devices take
whole minibatches (``ppo.microbatch_size`` applies to one device only).

On a CPU, devices can be forced with ``JAX_NUM_CPU_DEVICES=4`` (set before JAX starts),
but forced host devices share the same cores: the figures then show the overhead of
sharding and collectives, not a speedup. Real scaling needs several GPUs/TPUs.

The paper-size supernet is meant for accelerators: on a CPU only a few acting and update
steps are timed. Run with a smaller --num-steps (or --net-size smoke) to shorten runs.

    .venv/bin/python -m benchmarks.ppo_throughput [--networks impala,cpu_demo,paper]
    JAX_NUM_CPU_DEVICES=4 .venv/bin/python -m benchmarks.ppo_throughput --devices 1,2,4
"""

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np

from experiments.configs import base
from rldarts.env import envs
from rldarts.learn import arch, ppo, ppo_loops
from rldarts.learn.actor import Actor
from rldarts.model import conv as conv_lib
from rldarts.model import networks, random_search
from rldarts.run import setup


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
# --net-size smoke: the `smoke` preset's network fields on any case (IMPALA-CNN takes
# its depths and dense width), for quick checks of the machinery.
NET_SIZES = ("default", "smoke")


def network_config(name, c, net_size="default"):
    if name not in CASES:
        raise ValueError(f"unknown network case {name!r}; valid: {', '.join(CASES)}")
    if net_size not in NET_SIZES:
        raise ValueError(f"unknown net size {net_size!r}; valid: {', '.join(NET_SIZES)}")
    if net_size == "smoke":
        c.net = base.smoke(base.get_base_config()).net
    if name == "impala":
        c.network = "impala"
        c.arch.mode = "frozen"
    elif name == "cpu_demo":
        if net_size == "default":
            demo = base.cpu_demo(base.get_base_config())
            c.net = demo.net
    elif name in ("paper_gdas", "paper_pc_darts"):
        c.arch.method = name[len("paper_") :]
    elif name == "paper_fixed":
        genotype = random_search.sample_network_genotype(
            networks.CELL_TYPES[c.network],
            c.net.search_space,
            c.net.num_nodes,
            c.arch.discretize_k,
            seed=0,
            index=0,
        )
        path = os.path.join(tempfile.mkdtemp(), "genotype.json")
        with open(path, "w") as f:
            f.write(genotype.to_json())
        c.genotype = path
    return c


def make_config(name, args, learner_devices=1):
    c = network_config(name, base.get_base_config(), args.net_size)
    c.env_name = args.game
    c.ppo.num_steps = args.num_steps
    for key, value in (
        ("num_envs", args.num_envs),
        ("num_minibatches", args.num_minibatches),
        ("update_epochs", args.epochs),
    ):
        if value:
            c.ppo[key] = value
    # Several learner devices split the minibatch over themselves: no slices.
    c.ppo.microbatch_size = args.microbatch_size if learner_devices == 1 else 0
    c.ppo.update_loop = args.update_loop
    c.parallel.learner_devices = learner_devices
    c.parallel.async_actor = args.async_actor
    c.parallel.actor_devices = tuple(args.actor_devices)
    return c


def build(name, args, requested):
    """setup.build with ``requested`` learner devices (0 = all free devices: the
    largest count every batch size divides by). Returns (config, setup)."""
    if requested:
        c = make_config(name, args, requested)
        return c, setup.build(c, require_supernet=False)
    free = len(jax.local_devices())
    if args.async_actor and len(args.actor_devices) < free:
        free -= len(args.actor_devices)
    error = None
    for n in range(free, 0, -1):
        c = make_config(name, args, n)
        try:
            return c, setup.build(c, require_supernet=False)
        except ValueError as e:  # batch sizes that do not divide over n devices
            error = error or e
    raise error


def synthetic_rollout(T, n, obs):
    rng = np.random.default_rng(1)
    return {
        "obs": np.repeat(obs[None], T, axis=0),
        "actions": rng.integers(0, 15, (T, n)).astype(np.int32),
        "log_probs": np.full((T, n), -2.7, np.float32),
        "values": rng.normal(size=(T, n)).astype(np.float32),
        "rewards": rng.normal(size=(T, n)).astype(np.float32),
        "dones": rng.random((T, n)) < 0.01,
        "last_values": rng.normal(size=n).astype(np.float32),
    }


def bench(name, args, built=None):
    """The figures of one network on one topology (``built``: ``build``'s result)."""
    c, s = built or build(name, args, 1)
    agent, model, topology = s.agent, s.agent.model, s.topology
    n, T = c.ppo.num_envs, c.ppo.num_steps
    key = jax.random.PRNGKey(0)
    policy = jax.jit(agent.policy, static_argnames="group")
    obs = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    num_updates = 10
    state = agent.init_state(s.alphas, obs, key)
    out = {
        "network": name,
        "num_envs": n,
        "num_steps": T,
        "minibatch": n * T // c.ppo.num_minibatches,
        "epochs": c.ppo.update_epochs,
        "num_minibatches": c.ppo.num_minibatches,
        "learner_devices": topology.num_learner_devices,
        "actor_devices": int(topology.actor_mesh.devices.size),
        "async_actor": bool(c.parallel.async_actor),
    }

    # Acting: one forward pass at batch num_envs, as the actor runs it (params copied to
    # the actor's devices, the env batch sharded over them).
    acting = (
        topology.to_actor((state.params, state.alphas))
        if not topology.trivial
        else (state.params, state.alphas)
    )
    obs_a = topology.place_obs(obs)
    t0 = time.perf_counter()
    jax.block_until_ready(policy(*acting, obs_a, key, 1.0))
    out["compile_act_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    reps = args.act_repeats
    for _ in range(reps):
        jax.block_until_ready(policy(*acting, obs_a, key, 1.0))
    t_act = (time.perf_counter() - t0) / reps

    # One minibatch step, exactly as the host loop runs it (microbatched on one CPU
    # device unless --microbatch-size says otherwise; sharded over the learner devices).
    weight_opt = ppo.make_weight_optimizer(c.ppo, num_updates)
    alpha_opt = arch.make_alpha_optimizer(c.arch, weight_opt)
    mb = out["minibatch"]
    # --split-batch-norm: the step as before issue 10 (batch statistics over the CPU
    # slices and parts), for the A/B of its cost.
    batch_stats = networks.uses_batch_statistics(c.network) and not args.split_batch_norm
    out["microbatch"] = (
        ppo.microbatch_size(c.ppo.microbatch_size, [mb], batch_stats, topology.num_learner_devices)
        or mb
    )
    batch = {
        "obs": np.repeat(obs, mb // n + 1, axis=0)[:mb],
        "actions": np.zeros(mb, np.int32),
        "log_probs": np.full(mb, -2.7, np.float32),
        "values": np.zeros(mb, np.float32),
        "advantages": np.ones(mb, np.float32),
        "returns": np.ones(mb, np.float32),
    }
    batch = jax.device_put(batch) if topology.trivial else topology.shard_batch(batch)
    step = ppo.make_minibatch_step(
        model, c.ppo, agent.arch_cfg, weight_opt, alpha_opt, [mb], "host", batch_stats, topology
    )
    args_ = (state.arch_state, batch, None, 1.0, key)  # key: a sampled supernet's draw
    t0 = time.perf_counter()
    jax.block_until_ready(step(*args_))
    out["compile_step_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    for _ in range(args.step_repeats):
        jax.block_until_ready(step(*args_))
    t_step = (time.perf_counter() - t0) / args.step_repeats
    t_iter = T * t_act + c.ppo.update_epochs * c.ppo.num_minibatches * t_step
    out.update(
        act_ms=round(1000 * t_act, 2),
        minibatch_step_s=round(t_step, 4),
        compute_bound_sps=round(n * T / t_iter, 1),
    )

    # The whole update as the learner runs it (scan or host loop), on a synthetic rollout.
    wanted = args.update_networks.split(",")
    if args.update_repeats > 0 and (name in wanted or "all" in wanted):
        rollout = synthetic_rollout(T, n, obs)
        t0 = time.perf_counter()
        jax.block_until_ready(agent._update(state, rollout, 1.0))
        out["compile_update_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        for _ in range(args.update_repeats):
            jax.block_until_ready(agent._update(state, rollout, 1.0))
        t_update = (time.perf_counter() - t0) / args.update_repeats
        out.update(
            update_loop=ppo.update_loop(c.ppo.update_loop),
            update_s=round(t_update, 4),
            update_only_sps=round(n * T / t_update, 1),
            update_bound_sps=round(n * T / (T * t_act + t_update), 1),
        )

    wanted = args.full_loop_networks.split(",")
    if args.iterations > 0 and (name in wanted or "all" in wanted):
        actor = Actor(
            setup.env_factory(c, agent, s.num_heldout, topology), agent.policy, key, topology
        )
        actor.start_segment(0)
        asynchronous = agent._pipeline is not None
        # Warm-up + compile; with the async actor one more untimed iteration, so every
        # timed iteration waits on a rollout that was collected during an update.
        warmup = 2 if asynchronous else 1
        for _ in range(warmup):
            state, _, _ = agent.run_iteration(actor, state, 1.0, 1.0)
        lags = []
        t0 = time.perf_counter()
        for _ in range(args.iterations):
            state, metrics, _ = agent.run_iteration(actor, state, 1.0, 1.0)
            lags.append(metrics.get("policy_lag", 0.0))
        full = n * T * args.iterations / (time.perf_counter() - t0)
        agent.close()  # drops the last prefetched rollout (not timed)
        actor.close()
        out.update(
            update_loop=ppo.update_loop(c.ppo.update_loop),
            full_loop_iterations=args.iterations,
            full_loop_sps=round(full, 1),
            full_loop_over_compute_bound=round(full / out["compute_bound_sps"], 3),
        )
        if asynchronous:
            out["policy_lag"] = float(np.mean(lags))
    else:
        agent.close()
    return out


def scaling_table(runs):
    """Per network: the figures per learner-device count, and ratios to the first."""
    table = {}
    keys = (
        "act_ms",
        "minibatch_step_s",
        "compute_bound_sps",
        "update_s",
        "update_bound_sps",
        "full_loop_sps",
    )
    for run in runs:
        if "error" in run:
            continue
        rows = table.setdefault(run["network"], [])
        row = {"learner_devices": run["learner_devices"], **{k: run[k] for k in keys if k in run}}
        first = rows[0] if rows else row
        if "minibatch_step_s" in row:
            row["minibatch_step_speedup"] = round(
                first["minibatch_step_s"] / row["minibatch_step_s"], 3
            )
        if "update_s" in row and "update_s" in first:
            row["update_speedup"] = round(first["update_s"] / row["update_s"], 3)
        if "full_loop_sps" in row and "full_loop_sps" in first:
            row["full_loop_speedup"] = round(row["full_loop_sps"] / first["full_loop_sps"], 3)
        rows.append(row)
    return table


def parse_devices(text):
    """'1,2,all' -> [1, 2, 0] (0 = all free devices)."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if item in ("all", "0"):
            out.append(0)
        elif item.isdigit():
            out.append(int(item))
        else:
            raise argparse.ArgumentTypeError(f"--devices takes counts or 'all', got {item!r}")
    return out


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="On CPU, JAX_NUM_CPU_DEVICES=N (set before JAX starts) forces N host "
        "devices that share the same cores: the --devices figures then show the "
        "overhead of sharding, not a speedup.",
    )
    ap.add_argument("--networks", default="impala,cpu_demo,paper")
    ap.add_argument(
        "--full-loop-networks",
        default="impala,cpu_demo",
        help="networks (or 'all') whose full loop runs (real EnvPool envs)",
    )
    ap.add_argument(
        "--update-networks",
        default="impala,cpu_demo",
        help="networks (or 'all') whose whole update (agent._update) is timed",
    )
    ap.add_argument("--game", default="starpilot")
    ap.add_argument("--num-envs", type=int, default=0, help="ppo.num_envs; 0 = 64")
    ap.add_argument("--num-steps", type=int, default=256)
    ap.add_argument("--num-minibatches", type=int, default=0, help="ppo.num_minibatches; 0 = 8")
    ap.add_argument("--epochs", type=int, default=0, help="ppo.update_epochs; 0 = 3")
    ap.add_argument(
        "--net-size",
        default="default",
        choices=NET_SIZES,
        help="smoke: the smoke preset's widths/nodes/op set for every case",
    )
    ap.add_argument(
        "--iterations",
        type=int,
        default=1,
        help="timed full-loop iterations (after 1 warm-up, 2 with the async "
        "actor); 0 = no full loop",
    )
    ap.add_argument(
        "--env-steps", type=int, default=300, help="steps of the env-only figure; 0 = skip it"
    )
    ap.add_argument("--act-repeats", type=int, default=10)
    ap.add_argument("--step-repeats", type=int, default=2)
    ap.add_argument(
        "--update-repeats",
        type=int,
        default=1,
        help="timed whole updates after the compiling one; 0 = skip",
    )
    ap.add_argument(
        "--devices",
        type=parse_devices,
        default=None,
        help="learner device counts to compare, e.g. 1,2,4 or 1,all (a "
        "parallel.Topology over the first N local devices); default: 1. "
        "On CPU forced devices (JAX_NUM_CPU_DEVICES) share the cores: "
        "overhead, not speedup",
    )
    ap.add_argument(
        "--async-actor",
        action="store_true",
        help="parallel.async_actor: acting overlaps the update (full loop)",
    )
    ap.add_argument(
        "--actor-devices",
        type=lambda t: [int(i) for i in t.split(",")],
        default=[0],
        help="parallel.actor_devices with --async-actor",
    )
    ap.add_argument(
        "--conv-max-chunks",
        type=int,
        default=conv_lib.MAX_CHUNKS,
        help="rldarts.model.conv.MAX_CHUNKS; 1 = XLA's own conv weight gradient",
    )
    ap.add_argument(
        "--conv-chunk",
        type=int,
        default=conv_lib.CHUNK,
        help="rldarts.model.conv.CHUNK: samples per weight-gradient chunk",
    )
    ap.add_argument(
        "--cpu-parts",
        type=int,
        default=ppo_loops.CPU_PARTS,
        help="ppo_loops.CPU_PARTS: independent gradients per jitted microbatch call",
    )
    ap.add_argument(
        "--microbatch-size",
        type=int,
        default=0,
        help="ppo.microbatch_size (one learner device only); 0 = auto (256 "
        "on CPU), or the minibatch size for one jitted step per minibatch",
    )
    ap.add_argument(
        "--split-batch-norm",
        action="store_true",
        help="time the minibatch step of batch-norm networks in 256-sample "
        "slices of 4 parts (before issue 10: not the same update)",
    )
    ap.add_argument(
        "--update-loop",
        default="auto",
        choices=ppo_loops.UPDATE_LOOPS,
        help="ppo.update_loop of the whole update and the full loop",
    )
    ap.add_argument("--out", default="", help="also write the final JSON to this file")
    args = ap.parse_args()
    conv_lib.MAX_CHUNKS, conv_lib.CHUNK = args.conv_max_chunks, args.conv_chunk
    ppo_loops.CPU_PARTS = args.cpu_parts
    devices = args.devices or [1]
    result = {
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_count": jax.local_device_count(),
        "devices": [str(d) for d in jax.local_devices()],
        "conv_chunk": conv_lib.CHUNK,
        "conv_max_chunks": conv_lib.MAX_CHUNKS,
        "microbatch_size": args.microbatch_size,
        "cpu_parts": ppo_loops.CPU_PARTS,
        "async_actor": args.async_actor,
        "runs": [],
    }
    if args.env_steps > 0:
        result["env_only_sps_64envs"] = round(env_only_sps(args.game, 64, args.env_steps), 1)
        print(json.dumps({"env_only_sps_64envs": result["env_only_sps_64envs"]}), flush=True)
    for name in args.networks.split(","):
        done = set()  # resolved learner-device counts ('all' may equal a listed count)
        for requested in devices:
            try:
                built = build(name, args, requested)
            except ValueError as e:  # e.g. a batch that does not divide over N devices
                run = {"network": name, "requested_learner_devices": requested, "error": str(e)}
            else:
                count = built[1].topology.num_learner_devices
                if count in done:
                    built[1].agent.close()
                    continue
                done.add(count)
                run = bench(name, args, built)
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
    if args.devices:
        result["scaling"] = scaling_table(result["runs"])
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
