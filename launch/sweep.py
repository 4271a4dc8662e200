"""Runs a protocol (experiments/configs/protocol.py) one run after another, resumably.

python -m launch.sweep --protocol=cpu_small --root=runs/cpu_small [--dry_run]

Order: search per game x seed -> retrain of each searched genotype -> IMPALA per game x
seed -> random genotypes (written once under ROOT/random_genotypes) trained per game x
seed x sample. Workdirs: ROOT/<kind>/<game>/seed<k>[/random_<i>]. A run whose workdir
holds its final checkpoint (metrics.csv's last env_steps >= its budget and the checkpoint
of that iteration on disk) is skipped; any other run is started, and the binaries resume
an interrupted one from its last checkpoint, so re-running the sweep picks up where it
stopped. A retrain whose search left no genotype.json is skipped with a message.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # also runnable as `python launch/sweep.py`
    sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

from experiments.configs import protocol as protocol_lib  # noqa: E402
from rldarts.logger import METRICS_CSV, read_metrics  # noqa: E402

PROTOCOL = flags.DEFINE_string("protocol", "cpu_small",
                               f"one of {', '.join(protocol_lib.PROTOCOLS)}")
ROOT = flags.DEFINE_string("root", None, "directory holding every run of the sweep")
DRY_RUN = flags.DEFINE_bool("dry_run", False, "print the commands, run nothing")

BINARIES = {"search": "experiments.search", "retrain": "experiments.train",
            "impala": "experiments.train", "random": "experiments.train"}


@dataclasses.dataclass
class Run:
    kind: str  # search | retrain | impala | random
    game: str
    seed: int
    workdir: str
    total_env_steps: int
    argv: list[str]
    genotype: str | None = None  # must exist before the run starts
    sample: int | None = None

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def random_genotype_dir(root: str) -> str:
    return os.path.join(os.path.abspath(root), "random_genotypes")


def _run(kind: str, spec: dict, agent: str, game: str, seed: int, workdir: str,
         genotype: str | None = None, sample: int | None = None) -> Run:
    argv = [sys.executable, "-m", BINARIES[kind],
            f"--config={spec['config']}:{spec['preset']}", f"--workdir={workdir}",
            f"--config.env_name={game}", f"--config.seed={seed}",
            f"--config.total_env_steps={spec['total_env_steps']}",
            f"--config.agent={agent}", f"--config.network={spec['network']}"]
    if genotype:
        argv.append(f"--config.genotype={genotype}")
    return Run(kind, game, seed, workdir, spec["total_env_steps"], argv, genotype, sample)


def expand(protocol: dict, root: str) -> list[Run]:
    """The protocol's runs, in the order they execute."""
    from rldarts.random_search import GENOTYPE_FILE, sample_dir

    root = os.path.abspath(root)
    agent = protocol["agent"]
    cells = [(g, s) for g in protocol["games"] for s in protocol["seeds"]]
    wd = lambda kind, g, s: os.path.join(root, kind, g, f"seed{s}")  # noqa: E731
    runs = [_run("search", protocol["search"], agent, g, s, wd("search", g, s))
            for g, s in cells]
    runs += [_run("retrain", protocol["retrain"], agent, g, s, wd("retrain", g, s),
                  genotype=os.path.join(wd("search", g, s), GENOTYPE_FILE))
             for g, s in cells]
    runs += [_run("impala", protocol["baselines"]["impala"], agent, g, s,
                  wd("impala", g, s)) for g, s in cells]
    rnd = protocol["baselines"]["random"]
    for g, s in cells:
        for i in range(rnd["num_samples"]):
            gdir = sample_dir(random_genotype_dir(root), i)
            runs.append(_run("random", rnd, agent, g, s,
                             os.path.join(wd("random", g, s), os.path.basename(gdir)),
                             genotype=os.path.join(gdir, GENOTYPE_FILE), sample=i))
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


def write_random(protocol: dict, root: str) -> list[str]:
    from rldarts.random_search import write_random_genotypes

    rnd = protocol["baselines"]["random"]
    return write_random_genotypes(random_genotype_dir(root), rnd["num_samples"], rnd["seed"],
                                  rnd["network"], rnd["search_space"], rnd["num_nodes"],
                                  rnd["k"], **{key: rnd.get(key) for key in (
                                      "depths", "dense", "output_mode", "first_conv")})


def sweep(protocol: dict, root: str, dry_run: bool = False, log=print,
          runner=subprocess.run) -> dict:
    """Executes (or, dry, prints) the runs; returns {'ran', 'skipped', 'failed'} lists of
    workdirs. ``runner(argv, cwd=...)`` is ``subprocess.run`` (tests swap it)."""
    out = {"ran": [], "skipped": [], "failed": []}
    runs = expand(protocol, root)
    written = False
    for r in runs:
        if r.kind == "random" and not written:
            written = True
            where = random_genotype_dir(root)
            if dry_run:
                log(f"# write {protocol['baselines']['random']['num_samples']} random "
                    f"genotypes to {where}")
            else:
                log(f"# {len(write_random(protocol, root))} random genotypes in {where}")
        if is_finished(r.workdir, r.total_env_steps):
            log(f"# skip (finished, {r.total_env_steps:,} env steps): {r.workdir}")
            out["skipped"].append(r.workdir)
            continue
        if dry_run:
            log(r.command)
            continue
        if r.genotype and not os.path.exists(r.genotype):
            log(f"# skip {r.kind} {r.workdir}: no genotype at {r.genotype}"
                + (" (did the search run?)" if r.kind == "retrain" else ""))
            out["skipped"].append(r.workdir)
            continue
        log(f"# {r.kind} {r.game} seed {r.seed}" + (f" sample {r.sample}"
                                                     if r.sample is not None else ""))
        log(r.command)
        proc = runner(r.argv, cwd=REPO)
        (out["ran"] if proc.returncode == 0 else out["failed"]).append(r.workdir)
        if proc.returncode != 0:
            log(f"# FAILED (exit {proc.returncode}): {r.workdir}")
    return out


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    if not ROOT.value:
        sys.exit("error: --root=DIR is required")
    try:
        protocol = protocol_lib.get_protocol(PROTOCOL.value)
    except ValueError as e:
        sys.exit(f"error: {e}")
    result = sweep(protocol, ROOT.value, DRY_RUN.value)
    if not DRY_RUN.value:
        print(f"# done: {len(result['ran'])} ran, {len(result['skipped'])} skipped, "
              f"{len(result['failed'])} failed")
    if result["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
