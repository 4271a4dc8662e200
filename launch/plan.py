"""What a sweep runs: a protocol expanded into runs (command lines, workdirs, dependencies).

Order: unit by unit (seed by seed, the games of a seed; in a unit each agent in turn):
the search -> the retrain of its genotype -> the fixed baseline (the protocol's
hand-designed network: IMPALA-CNN, minatar_cnn, ...) -> the random genotypes (written
once under ROOT/random_genotypes, the same for every unit) -> the milestone genotypes
(the search's genotype at each protocol milestone, written under
ROOT/milestone_genotypes once the search has finished). A sweep stopped part-way thus
leaves whole units. A run spec's ``overrides`` ({config key: value}) go on its command
line after the preset.
Workdirs: ROOT/<kind>/<game>/seed<k>[/random_<i> | /m<fraction>], the baseline's kind
being its network's name and a game's '/' a '_' (minatar/breakout -> minatar_breakout).
A protocol with several ``agents`` puts ``_<agent>`` after every kind folder
(search_ppo, search_dqn, milestone_genotypes_dqn, ...: still 4 folders deep, as the
report searches) and shares one set of random genotypes; narrowed to one of them
(``--agent``, ``agent_folders``) it keeps those folders.

A run's ``after`` names the workdir of the run it waits for (its search): the engines
start it only once that run has finished. Nothing here imports Ray or JAX.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys

from rldarts.run.logger import METRICS_CSV, read_metrics

BINARIES = {
    "search": "experiments.search",
    "retrain": "experiments.train",
    "impala": "experiments.train",
    "random": "experiments.train",
    "milestone": "experiments.train",
}  # any other kind is a fixed baseline network (impala, minatar_cnn, ...): trained
GENOTYPE_FILE = "genotype.json"  # = rldarts.model.random_search.GENOTYPE_FILE (no JAX import here)
MILESTONE_INFO = "milestone.json"  # beside a milestone genotype: what it was cut from
HISTORY_FILE = "genotype_history.jsonl"  # written by every search (rldarts/run/experiment.py)


@dataclasses.dataclass
class Run:
    kind: str  # search | retrain | impala | random | milestone
    game: str
    seed: int
    workdir: str
    total_env_steps: int
    argv: list[str]
    genotype: str | None = None  # must exist before the run starts
    sample: int | None = None  # random: the sample index
    after: str | None = None  # workdir of the run this one waits for
    milestone: float | None = None  # milestone: the fraction of the search budget
    search_budget: int | None = None  # milestone: the search's total_env_steps
    agent: str | None = None  # the agent its command line names

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def title(self) -> str:
        extra = (
            f" sample {self.sample}"
            if self.sample is not None
            else f" at {self.milestone:g} of the search"
            if self.milestone is not None
            else ""
        )
        return f"{self.kind} {self.game} seed {self.seed}{extra}"


def random_genotype_dir(root: str) -> str:
    return os.path.join(os.path.abspath(root), "random_genotypes")


def milestone_name(fraction: float) -> str:
    """m0.25, m0.5, m1.0: the folder of one milestone (workdir and genotype)."""
    return f"m{float(fraction)}"


def game_folder(game: str) -> str:
    """A game's folder name: env names such as minatar/breakout hold a '/'."""
    return game.replace("/", "_")


def milestone_genotype_path(
    root: str, game: str, seed: int, fraction: float, suffix: str = ""
) -> str:
    return os.path.join(
        os.path.abspath(root),
        f"milestone_genotypes{suffix}",
        game_folder(game),
        f"seed{seed}",
        milestone_name(fraction),
        GENOTYPE_FILE,
    )


def _run(kind: str, spec: dict, agent: str, game: str, seed: int, workdir: str, **extra) -> Run:
    argv = [
        sys.executable,
        "-m",
        BINARIES.get(kind, BINARIES["impala"]),
        f"--config={spec['config']}:{spec['preset']}",
        f"--workdir={workdir}",
        f"--config.env_name={game}",
        f"--config.seed={seed}",
        f"--config.total_env_steps={spec['total_env_steps']}",
        f"--config.agent={agent}",
        f"--config.network={spec['network']}",
    ]
    # The protocol's settings beyond the preset (e.g. a short budget's PPO rollout).
    argv += [f"--config.{key}={value}" for key, value in spec.get("overrides", {}).items()]
    if extra.get("genotype"):
        argv.append(f"--config.genotype={extra['genotype']}")
    return Run(kind, game, seed, workdir, spec["total_env_steps"], argv, agent=agent, **extra)


def agents(protocol: dict) -> list[str]:
    """The agents a protocol runs: its ``agents`` list, else its one ``agent``."""
    return list(protocol.get("agents") or [protocol["agent"]])


def expand(protocol: dict, root: str) -> list[Run]:
    """The protocol's runs, in the order a one-at-a-time engine executes them: unit by
    unit (seed by seed, every game of a seed, each agent's runs in turn), so a sweep
    stopped part-way leaves whole units, each one a complete comparison for the report,
    spread over the games first."""
    names = agents(protocol)
    folders = len(names) > 1 or protocol.get("agent_folders", False)
    suffixes = {a: (f"_{a}" if folders else "") for a in names}
    return [
        r
        for seed in protocol["seeds"]
        for game in protocol["games"]
        for a in names
        for r in _unit_runs(protocol, os.path.abspath(root), a, suffixes[a], game, seed)
    ]


def _unit_runs(protocol: dict, root: str, agent: str, suffix: str, g: str, s: int) -> list[Run]:
    """One agent's runs of one game x seed; `suffix` follows every kind folder (several
    agents in one root)."""
    wd = lambda kind: os.path.join(root, kind + suffix, game_folder(g), f"seed{s}")
    search = wd("search")
    runs = [
        _run("search", protocol["search"], agent, g, s, search),
        _run(
            "retrain",
            protocol["retrain"],
            agent,
            g,
            s,
            wd("retrain"),
            genotype=os.path.join(search, GENOTYPE_FILE),
            after=search,
        ),
    ]
    fixed = [(k, spec) for k, spec in protocol["baselines"].items() if k != "random"]
    runs += [_run(k, spec, agent, g, s, wd(k)) for k, spec in fixed]
    rnd = protocol["baselines"]["random"]
    for i in range(rnd["num_samples"]):
        name = f"random_{i:03d}"  # = rldarts.model.random_search.sample_dir's folder
        genotype = os.path.join(random_genotype_dir(root), name, GENOTYPE_FILE)
        runs.append(
            _run(
                "random",
                rnd,
                agent,
                g,
                s,
                os.path.join(wd("random"), name),
                genotype=genotype,
                sample=i,
            )
        )
    for f in protocol.get("milestones", []):
        runs.append(
            _run(
                "milestone",
                protocol["retrain"],
                agent,
                g,
                s,
                os.path.join(wd("milestone"), milestone_name(f)),
                genotype=milestone_genotype_path(root, g, s, f, suffix),
                after=search,
                milestone=float(f),
                search_budget=protocol["search"]["total_env_steps"],
            )
        )
    return runs


def is_finished(workdir: str, total_env_steps: int) -> bool:
    """metrics.csv's last row reached the budget and that iteration's checkpoint exists."""
    path = os.path.join(workdir, METRICS_CSV)
    if not os.path.exists(path):
        return False
    try:
        rows = read_metrics(path)
    except (OSError, ValueError):
        return False
    if not rows or not isinstance(rows[-1].get("env_steps"), float):
        return False
    last = rows[-1]
    if last["env_steps"] < total_env_steps or not isinstance(last.get("iteration"), float):
        return False
    return os.path.isdir(os.path.join(workdir, "checkpoints", str(int(last["iteration"]))))


def foreign_agent_runs(runs: list[Run], agent: str | None = None) -> list[str]:
    """Workdirs whose config.json was written by another agent than the run's (`agent`
    when given): resuming them would fail on the fingerprint, and a finished one would be
    skipped as if it were this agent's."""
    out = []
    for r in runs:
        want = agent or r.agent
        try:
            with open(os.path.join(r.workdir, "config.json")) as f:
                found = json.load(f).get("agent")
        except (OSError, ValueError, AttributeError):
            continue
        if found not in (None, want):
            out.append(f"{r.workdir} ({found})")
    return out


def write_random(protocol: dict, root: str) -> list[str]:
    from rldarts.model.random_search import write_random_genotypes

    rnd = protocol["baselines"]["random"]
    return write_random_genotypes(
        random_genotype_dir(root),
        rnd["num_samples"],
        rnd["seed"],
        rnd["network"],
        rnd["search_space"],
        rnd["num_nodes"],
        rnd["k"],
        **{key: rnd.get(key) for key in ("depths", "dense", "output_mode", "first_conv")},
    )
