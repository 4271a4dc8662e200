"""MinAtar (gymnax) throughput on this machine: env only and the PPO full loop.

Prints JSON:
* env_only_sps: ``families.make_env`` (the host ``VecEnv`` the actor steps, one jitted
  vmapped gymnax step per vector step) with random actions, per game;
* per network case (``minatar_cnn``; ``darts_minatar`` supernet searching, ``joint``;
  ``darts_minatar_fixed``: the same network with a discretized cell, a random genotype
  of the preset's space): ``full_loop_sps`` (whole ``ppo.Agent.run_iteration`` calls of
  the ``minatar`` preset: rollout on the host path + update), ``rollout_s`` and
  ``update_s`` per iteration (the rollout timed on its own, the update the rest), per
  ``ppo.rollout_loop`` in ``--rollout-loops`` (``host``: a Python loop of jitted policy
  calls and gymnax steps; ``scan``: both traced into one jitted scan, ``Actor.act_scan``),
  measured in one run so their ratio is fair.

    .venv/bin/python -m benchmarks.minatar_throughput [--iterations 3] [--game breakout] \
        [--rollout-loops host,scan]
"""

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np

from experiments.configs import base
from rldarts.env import families
from rldarts.learn import arch
from rldarts.learn.actor import Actor
from rldarts.model import networks, random_search
from rldarts.run import setup

CASES = ("minatar_cnn", "darts_minatar", "darts_minatar_fixed")


def env_only_sps(env_name: str, num_envs: int, steps: int = 300) -> float:
    venv = families.make_env(env_name, num_envs, seed=0)
    venv.reset()
    rng = np.random.default_rng(0)
    actions = rng.integers(0, venv.num_actions, (steps + 1, num_envs))
    venv.step(actions[0])  # compile
    t0 = time.perf_counter()
    for a in actions[1:]:
        venv.step(a)
    return steps * num_envs / (time.perf_counter() - t0)


def case_config(case: str, env_name: str, rollout_loop: str = "host"):
    c = base.build("minatar", env_name=env_name)
    c.ppo.rollout_loop = rollout_loop
    if case == "minatar_cnn":
        c.network, c.arch.mode = "minatar_cnn", "frozen"
    else:
        c.network = "darts_minatar"
    if case == "darts_minatar_fixed":
        genotype = random_search.sample_network_genotype(
            networks.CELL_TYPES[c.network],
            c.net.search_space,
            c.net.num_nodes,
            c.arch.discretize_k,
            0,
            0,
        )
        path = os.path.join(tempfile.mkdtemp(), "genotype.json")
        with open(path, "w") as f:
            f.write(genotype.to_json())
        c.genotype, c.arch.mode = path, "frozen"
    return c


def full_loop(case: str, env_name: str, iterations: int, rollout_loop: str = "host") -> dict:
    c = case_config(case, env_name, rollout_loop)
    s = setup.build(c, require_supernet=False)
    agent = s.agent
    key = jax.random.PRNGKey(0)
    actor = Actor(setup.env_factory(c, agent, s.num_heldout, s.topology), agent.policy, key)
    env = families.spec(c.env_name)
    obs = np.zeros((agent.num_envs, *env.observation_shape), env.observation_dtype)
    state = agent.init_state(s.alphas, obs, key)
    actor.start_segment(0)
    inv_temp = arch.inverse_temperature(c.arch, 0.0)
    state, _, _ = agent.run_iteration(actor, state, inv_temp)  # compile
    t0 = time.perf_counter()
    for _ in range(iterations):
        state, _, _ = agent.run_iteration(actor, state, inv_temp)
    loop_s = (time.perf_counter() - t0) / iterations
    t0 = time.perf_counter()
    for _ in range(iterations):
        agent._collect(actor, state, inv_temp)
    rollout_s = (time.perf_counter() - t0) / iterations
    actor.close()
    return {
        "full_loop_sps": round(agent.steps_per_iteration / loop_s, 1),
        "iteration_s": round(loop_s, 3),
        "rollout_s": round(rollout_s, 3),
        "update_s": round(loop_s - rollout_s, 3),
        "steps_per_iteration": agent.steps_per_iteration,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--game", default="breakout", help="full-loop game")
    games = [n.split("/")[1] for n in families.ENV_FAMILIES["minatar"].names]
    ap.add_argument("--env-games", default=",".join(games))
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--num-envs", type=int, default=64, help="env-only batch")
    ap.add_argument("--rollout-loops", default="host", help="ppo.rollout_loop values")
    args = ap.parse_args()
    out = {
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "env_only_sps": {
            g: round(env_only_sps(f"minatar/{g}", args.num_envs), 1)
            for g in args.env_games.split(",")
            if g
        },
        "full_loop": {},
    }
    for case in args.cases.split(","):
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r}; valid: {', '.join(CASES)}")
        for loop in args.rollout_loops.split(","):
            name = f"{case}@{loop}"
            out["full_loop"][name] = full_loop(case, f"minatar/{args.game}", args.iterations, loop)
            print(json.dumps({name: out["full_loop"][name]}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
