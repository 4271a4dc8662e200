"""Experiment protocols: what a full comparison runs, as a plain dict (read by launch/sweep.py).

A protocol names the games, the seeds, the agent, and four kinds of runs, each with a
config file, a preset and an env-step budget:
  search   the supernet search (experiments/search.py) per game x seed;
  retrain  the searched genotype trained from scratch (experiments/train.py);
  impala   the IMPALA-CNN baseline at the same preset widths;
  random   random-search baseline: ``num_samples`` genotypes drawn by
           ``rldarts.random_search`` (stream ``seed``, the same genotypes for every game
           and run seed), each trained per game x seed.
Budgets default to the preset's ``total_env_steps`` and are passed explicitly on the
command line, so the protocol alone says what "finished" means.

Presets: ``cpu_small`` (starpilot, 2 seeds, cpu_demo everywhere, 2 random genotypes:
a laptop check of the whole pipeline) and ``paper`` (16 Procgen games, 3 seeds, 25M env
steps per run, 10 random genotypes).
"""
from __future__ import annotations

import copy

from experiments.configs import base

SEARCH_CONFIG = "experiments/configs/search.py"
TRAIN_CONFIG = "experiments/configs/train.py"
PROCGEN_GAMES = ("bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun",
                 "dodgeball", "fruitbot", "heist", "jumper", "leaper", "maze", "miner",
                 "ninja", "plunder", "starpilot")


def _runs(preset: str, total_env_steps: int | None, network: str, num_samples: int,
          random_seed: int) -> dict:
    c = base.build(preset)
    steps = int(total_env_steps or c.total_env_steps)
    run = lambda config, net: {"config": config, "preset": preset,  # noqa: E731
                               "total_env_steps": steps, "network": net}
    random = run(TRAIN_CONFIG, network)
    # What the random genotypes must fit: the trained network's search space and wiring.
    random.update(num_samples=num_samples, seed=random_seed,
                  search_space=c.net.search_space, num_nodes=c.net.num_nodes,
                  k=c.arch.discretize_k, depths=list(c.net.depths), dense=c.net.dense,
                  output_mode=c.net.output_mode, first_conv=c.net.first_conv)
    return {"search": run(SEARCH_CONFIG, network),
            "retrain": run(TRAIN_CONFIG, network),
            "baselines": {"impala": run(TRAIN_CONFIG, "impala"), "random": random}}


def cpu_small() -> dict:
    return {"name": "cpu_small", "games": ["starpilot"], "seeds": [0, 1], "agent": "ppo",
            **_runs("cpu_demo", None, "darts_standard", num_samples=2, random_seed=0)}


def paper() -> dict:
    return {"name": "paper", "games": list(PROCGEN_GAMES), "seeds": [0, 1, 2],
            "agent": "ppo",
            **_runs("paper", 25_000_000, "darts_standard", num_samples=10, random_seed=0)}


PROTOCOLS = {"cpu_small": cpu_small, "paper": paper}


def get_protocol(name: str) -> dict:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; valid protocols: "
                         f"{', '.join(PROTOCOLS)}")
    return copy.deepcopy(PROTOCOLS[name]())
