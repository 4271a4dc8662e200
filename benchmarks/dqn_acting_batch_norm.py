"""How much multi-host acting changes a DARTS supernet's Q-values: with P processes
each acting forward pass normalises (the cells' batch statistics, ``ops.batch_norm``)
over N/P envs instead of N, so the same params and observations give other Q-values
and sometimes another greedy action.

For a freshly initialised DQN supernet (search preset's network, C51 dueling head) on
Procgen frames after ``--warmup`` random steps of N envs, it prints JSON: the share of
envs whose greedy action differs between one forward of N and P forwards of N/P, and
the largest |dQ| relative to the spread of that env's Q-values.

    .venv/bin/python -m benchmarks.dqn_acting_batch_norm [--preset smoke] [--envs 64]
"""

import argparse
import json

import jax
import numpy as np

from experiments.configs import search
from rldarts.env import envs
from rldarts.learn import dqn, dqn_losses
from rldarts.run import setup


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="smoke")
    p.add_argument("--envs", type=int, default=64)
    p.add_argument("--processes", default="2,4")
    p.add_argument("--warmup", type=int, default=50)
    args = p.parse_args()
    c = search.get_config(args.preset)
    c.agent, c.dqn.num_envs, c.arch.mode = "dqn", args.envs, "joint"
    s = setup.build(c, require_supernet=True)
    env = envs.make_procgen(c.env_name, args.envs, c.distribution_mode, c.num_levels, 0, 1)
    obs, rng = env.reset(), np.random.default_rng(0)
    for _ in range(args.warmup):
        obs = env.step(rng.integers(0, 15, args.envs))[0]
    model = s.agent.model
    params = model.init(jax.random.PRNGKey(0), obs, s.alphas)
    support = dqn.atoms(c.dqn)
    q = jax.jit(lambda o: dqn_losses.q_values(model.apply(params, o, s.alphas), support))
    full = np.asarray(q(obs))
    spread = full.max(1) - full.min(1)
    out = {"preset": args.preset, "envs": args.envs}
    for n in (int(x) for x in args.processes.split(",")):
        split = np.concatenate([np.asarray(q(part)) for part in np.split(obs, n)])
        out[f"processes_{n}"] = {
            "greedy_action_differs": float(np.mean(full.argmax(1) != split.argmax(1))),
            "max_dq_over_spread": float(np.max(np.abs(full - split).max(1) / spread)),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
