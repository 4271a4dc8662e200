"""Experiment protocols: what a full comparison runs, as a plain dict (read by launch/sweep.py).

A protocol names the games, the seeds, the agent (or ``agents``), the search milestones
and four kinds of runs, each with a config file, a preset and an env-step budget:
  search   the supernet search (experiments/search.py) per game x seed;
  retrain  the searched genotype trained from scratch (experiments/train.py);
  baseline the hand-designed network, keyed by its name in ``baselines`` (``impala``:
           IMPALA-CNN at the same preset widths; ``minatar_cnn`` for MinAtar);
  random   random-search baseline: ``num_samples`` genotypes drawn by
           ``rldarts.model.random_search`` (stream ``seed``, the same genotypes for every game
           and run seed), each trained per game x seed.
``milestones`` (fractions of the search budget in (0, 1]) add a fifth kind: the
genotype each search had discretized at that point of its budget, retrained from scratch
with the retrain settings ("cells along the search"; launch/milestones.py).
Budgets default to the preset's ``total_env_steps`` and are passed explicitly on the
command line, so the protocol alone says what "finished" means.

Presets: ``smoke`` (starpilot, 1 seed, the smoke preset, 1 random genotype, milestones
0.5 and 1.0: checks an install in a few minutes; the tests run it), ``cpu_small``
(starpilot, 2 seeds, cpu_demo everywhere, 2 random genotypes: a laptop check of the
whole pipeline), ``cpu_small_milestones`` (cpu_small + milestones 0.25, 0.5, 0.75, 1.0),
``paper`` (16 Procgen games, 3 seeds, 25M env steps per run, 10 random genotypes) and
``paper_milestones`` (paper + the four milestones). ``get_protocol`` overrides the agent
(ppo | dqn: the same protocol off-policy) and the milestones.

MinAtar (the paper's claims on a laptop, report section 8): the baseline is
``minatar_cnn`` instead of IMPALA, the supernet ``darts_minatar``. ``minatar_quick``
(2 games, 2 seeds, the minatar_smoke preset, 2 random genotypes, milestone 0.5, PPO:
24 runs aimed at <= 15 minutes on 2 cores) and ``minatar_claims`` (5 games, 5 seeds,
65,536 env steps per run with the settings that learn in it (``overrides``), 4 random
genotypes, milestone 0.5, ``agents`` PPO and DQN: each agent's runs in its own folders,
launch/plan.py; ``--agent`` narrows it to one).

DM-Control (issue 22, continuous control): ``dmc_smoke`` (cartpole_swingup, 1 seed, the
dmc_smoke preset, 1 random genotype: a wiring check) and ``dmc`` (6 tasks x 3 seeds,
500k agent steps, 5 random genotypes; accelerators), agent ``sac``, supernet
``darts_dmc``, baseline ``drq`` (DrQ's encoder). ``--agent=sac`` on a Procgen or MinAtar
protocol gives runs the binaries refuse in one line (discrete actions), and vice versa.
"""

from __future__ import annotations

import copy

from experiments.configs import base
from rldarts.env.envs import PROCGEN_GAMES  # NumPy only: protocols stay free of JAX

SEARCH_CONFIG = "experiments/configs/search.py"
TRAIN_CONFIG = "experiments/configs/train.py"
AGENTS = ("ppo", "dqn", "sac")  # = rldarts.learn.agents.AGENTS (named here without importing JAX)
QUARTERS = [0.25, 0.5, 0.75, 1.0]
# = rldarts.env's MinAtar games (named here: the protocols must load without the env stack)
MINATAR_GAME_NAMES = ("breakout", "asterix", "freeway", "space_invaders", "seaquest")


def _runs(
    preset: str,
    total_env_steps: int | None,
    network: str,
    num_samples: int,
    random_seed: int,
    baseline: str = "impala",
    budgets: dict | None = None,
    overrides: dict | None = None,
) -> dict:
    """The run specs of a protocol. `baseline`: the hand-designed network trained per game
    x seed (its workdirs are ROOT/<baseline>/...); `budgets`: per-kind env-step budgets
    (search, retrain, baseline, random) overriding `total_env_steps` (default: the preset's);
    `overrides`: config keys every run sets after the preset ({"ppo.num_steps": 32})."""
    overrides = dict(overrides or {})
    c = base.build(preset)
    for key, value in overrides.items():  # a misspelt key fails here, not in every run
        _check_override(c, key, value)
    steps = int(total_env_steps or c.total_env_steps)
    budgets = budgets or {}
    run = lambda config, net, kind: {
        "config": config,
        "preset": preset,
        "total_env_steps": int(budgets.get(kind, steps)),
        "network": net,
        **({"overrides": overrides} if overrides else {}),
    }
    random = run(TRAIN_CONFIG, network, "random")
    # What the random genotypes must fit: the trained network's search space and wiring.
    random.update(
        num_samples=num_samples,
        seed=random_seed,
        search_space=c.net.search_space,
        num_nodes=c.net.num_nodes,
        k=c.arch.discretize_k,
        depths=list(c.net.depths),
        dense=c.net.dense,
        output_mode=c.net.output_mode,
        first_conv=c.net.first_conv,
    )
    return {
        "search": run(SEARCH_CONFIG, network, "search"),
        "retrain": run(TRAIN_CONFIG, network, "retrain"),
        "baselines": {baseline: run(TRAIN_CONFIG, baseline, "baseline"), "random": random},
    }


def _check_override(c, key: str, value) -> None:
    node = c
    *path, leaf = key.split(".")
    for part in path:
        node = node.get(part) if hasattr(node, "get") else None
    if node is None or leaf not in node:
        raise ValueError(f"protocol override {key}={value!r}: no such config key")


def smoke() -> dict:
    return {
        "name": "smoke",
        "games": ["starpilot"],
        "seeds": [0],
        "agent": "ppo",
        "milestones": [0.5, 1.0],
        **_runs("smoke", None, "darts_standard", num_samples=1, random_seed=0),
    }


def cpu_small() -> dict:
    return {
        "name": "cpu_small",
        "games": ["starpilot"],
        "seeds": [0, 1],
        "agent": "ppo",
        "milestones": [],
        **_runs("cpu_demo", None, "darts_standard", num_samples=2, random_seed=0),
    }


def paper() -> dict:
    return {
        "name": "paper",
        "games": list(PROCGEN_GAMES),
        "seeds": [0, 1, 2],
        "agent": "ppo",
        "milestones": [],
        **_runs("paper", 25_000_000, "darts_standard", num_samples=10, random_seed=0),
    }


MINATAR_GAMES = [f"minatar/{g}" for g in MINATAR_GAME_NAMES]
# minatar_claims on a 2-core CPU; every kind runs the same budget.
MINATAR_CLAIMS_STEPS = 65_536
# What learns in that budget (measured: benchmarks/results/README.md, issue 20): PPO with
# 32-step rollouts (2,048 steps an update, 32 updates) at lr 3e-3 (the minatar preset's
# 128 steps at 1e-3 suit its 2M-step budget); DQN with two replayed samples per insert
# at lr 3e-4 and learning from 2,048 steps on (the preset's 8 samples per insert at 1e-4
# after 5k steps suit 2M steps).
MINATAR_CLAIMS_OVERRIDES = {
    "ppo.num_steps": 32,
    "ppo.learning_rate": 3e-3,
    "dqn.iteration_env_steps": 2048,
    "dqn.samples_per_insert": 2.0,
    "dqn.learning_rate": 3e-4,
    "dqn.min_replay_size": 2048,
    "eval.every_iterations": 16,
    "log.checkpoint_every_iterations": 16,
    "log.genotype_every_iterations": 2,
}


def minatar_quick() -> dict:
    """The claims table on a laptop in ~15 minutes: 2 games x 2 seeds at the
    minatar_smoke budgets, 2 random cells, one milestone (the search's genotype at half
    its budget, against its final genotype's retrain for C3); PPO only (C6: inconclusive)."""
    return {
        "name": "minatar_quick",
        "games": ["minatar/breakout", "minatar/space_invaders"],
        "seeds": [0, 1],
        "agent": "ppo",
        "milestones": [0.5],
        **_runs(
            "minatar_smoke",
            None,
            "darts_minatar",
            num_samples=2,
            random_seed=0,
            baseline="minatar_cnn",
        ),
    }


def minatar_claims() -> dict:
    """Every claim C1-C6 on a CPU budget: 5 MinAtar games x 5 seeds x {PPO, DQN}, 65,536
    env steps per run (where minatar_cnn has clearly learned on Breakout, 3.9 vs 0.2 for
    random), 4 random cells per game x seed (best-of-k for k <= 4 against the search's
    search + retrain cost), milestone 0.5 (the final retrain is 1.0). Run unit by unit
    (launch/plan.py), so a stopped sweep still reports whole game x seed units."""
    return {
        "name": "minatar_claims",
        "games": list(MINATAR_GAMES),
        "seeds": [0, 1, 2, 3, 4],
        "agent": "ppo",
        "agents": ["ppo", "dqn"],  # discrete actions: C6 is about these two
        "milestones": [0.5],
        **_runs(
            "minatar",
            MINATAR_CLAIMS_STEPS,
            "darts_minatar",
            num_samples=4,
            random_seed=0,
            baseline="minatar_cnn",
            overrides=MINATAR_CLAIMS_OVERRIDES,
        ),
    }


DMC_TASKS = [
    "dmc/cartpole_swingup",
    "dmc/cheetah_run",
    "dmc/walker_walk",
    "dmc/finger_spin",
    "dmc/reacher_easy",
    "dmc/ball_in_cup_catch",
]  # = rldarts.env.dmc.TASKS (named here: the protocols load without the env stack)


def dmc_smoke() -> dict:
    """SAC from pixels end to end on cartpole_swingup at the dmc_smoke budgets: a search,
    its retrain, the DrQ encoder baseline and one random cell (a wiring check, minutes)."""
    return {
        "name": "dmc_smoke",
        "games": ["dmc/cartpole_swingup"],
        "seeds": [0],
        "agent": "sac",
        "milestones": [],
        **_runs("dmc_smoke", None, "darts_dmc", num_samples=1, random_seed=0, baseline="drq"),
    }


def dmc() -> dict:
    """The paper's continuous-control row: 6 DM-Control tasks x 3 seeds, SAC (DrQ's
    settings), 500k agent steps per run, the DrQ encoder as baseline, 5 random cells.
    For accelerators."""
    return {
        "name": "dmc",
        "games": list(DMC_TASKS),
        "seeds": [0, 1, 2],
        "agent": "sac",
        "milestones": [],
        **_runs("dmc", None, "darts_dmc", num_samples=5, random_seed=0, baseline="drq"),
    }


def _with_milestones(make, name: str):
    return lambda: {**make(), "name": name, "milestones": list(QUARTERS)}


PROTOCOLS = {
    "smoke": smoke,
    "cpu_small": cpu_small,
    "cpu_small_milestones": _with_milestones(cpu_small, "cpu_small_milestones"),
    "paper": paper,
    "paper_milestones": _with_milestones(paper, "paper_milestones"),
    "minatar_quick": minatar_quick,
    "minatar_claims": minatar_claims,
    "dmc_smoke": dmc_smoke,
    "dmc": dmc,
}


def check_milestones(milestones) -> list[float]:
    """Sorted, distinct fractions of the search budget; ValueError for one outside (0, 1]."""
    out = []
    for m in milestones:
        try:
            f = float(m)
        except (TypeError, ValueError):
            raise ValueError(
                f"milestone {m!r} is not a number; milestones are fractions "
                "of the search budget in (0, 1], e.g. 0.25,0.5,1.0"
            ) from None
        if not 0.0 < f <= 1.0:  # also refuses NaN
            raise ValueError(
                f"milestone {m} is outside (0, 1]; milestones are fractions "
                "of the search budget, e.g. 0.25,0.5,1.0"
            )
        out.append(f)
    return sorted(set(out))


def get_protocol(name: str, agent: str | None = None, milestones=None) -> dict:
    """The protocol `name`; `agent` and `milestones` (None: the protocol's) override it."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; valid protocols: {', '.join(PROTOCOLS)}")
    protocol = copy.deepcopy(PROTOCOLS[name]())
    if agent is not None:
        if agent not in AGENTS:
            raise ValueError(f"unknown agent {agent!r}; valid agents: {', '.join(AGENTS)}")
        protocol["agent"] = agent
        if agent in protocol.get("agents", ()):
            # One of the protocol's agents: its runs keep the folders (search_<agent>, ...)
            # they have in the whole sweep, which can go on later in the same root.
            protocol["agents"] = [agent]
            protocol["agent_folders"] = True
        else:
            protocol.pop("agents", None)  # the single-agent layout
    protocol["milestones"] = check_milestones(
        protocol["milestones"] if milestones is None else milestones
    )
    return protocol
