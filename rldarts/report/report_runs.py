"""What a run workdir holds, as the report reads it: ``config.json`` and ``metrics.csv``
(+ optional ``alpha_history.jsonl``, ``genotype.json``, and a ``random_search.json`` or
``milestone.json`` marker in the workdir or beside its genotype file, as launch/sweep.py
lays them out), gathered into a `Run` with its method (``search``, ``darts cell``,
``random cell``, ``milestone cell``, or the name of a hand-designed baseline network:
``impala``, ``minatar_cnn``, ``drq``, see `BASELINES`) and agent.
rldarts/report/writer.py writes the report from these runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from rldarts.model.genotypes import NetworkGenotype
from rldarts.run.logger import read_metrics

LAST_EVALS = 3
MAX_DEPTH = 4  # launch/sweep.py's ROOT/random/<game>/seed<k>/random_<i> is 4 deep
KEYS = ("episode_return_train", "episode_return_test")
# The hand-designed networks a cell is compared with (Procgen: IMPALA-CNN; MinAtar: the
# MinAtar paper's CNN); a run of one has the network's name as its method.
BASELINES = ("impala", "minatar_cnn", "drq")


@dataclasses.dataclass
class Run:
    path: str
    name: str
    config: dict
    rows: list
    method: str
    genotype: NetworkGenotype | None = None
    random_search: dict | None = None
    alpha_history: list = dataclasses.field(default_factory=list)
    milestone: dict | None = None  # milestone.json: fraction, env_steps, search budget

    game = property(lambda self: str(self.config.get("env_name", "?")))
    agent = property(lambda self: str(self.config.get("agent", "?")))
    seed = property(lambda self: int(self.config.get("seed", 0)))
    total = property(lambda self: int(self.config.get("total_env_steps", 0)))
    fraction = property(lambda self: float((self.milestone or {}).get("fraction", "nan")))
    label = property(lambda self: f"{self.method}{self.at} ({self.agent})")
    at = property(lambda self: f" @{self.fraction:g}" if self.milestone else "")
    reached = property(
        lambda self: int(max([r.get("env_steps") or 0 for r in self.rows], default=0))
    )
    partial = property(lambda self: self.reached < self.total)
    eval_rows = property(
        lambda self: [r for r in self.rows if as_number(r.get(KEYS[1])) is not None]
    )
    sample_index = property(lambda self: (self.random_search or {}).get("sample_index", 0))


def as_number(v, default=None):
    """`v` as a float when it is a finite number (a metrics cell), else `default`."""
    return float(v) if isinstance(v, (int, float)) and np.isfinite(v) else default


def find_workdirs(root: str, max_depth: int = MAX_DEPTH) -> list[str]:
    """`root` itself if it is a workdir, else its workdir subfolders up to `max_depth`."""
    if not os.path.isdir(root):
        raise ValueError(f"--runs: {root} is not a directory")
    is_workdir = lambda p: all(
        os.path.isfile(os.path.join(p, f)) for f in ("config.json", "metrics.csv")
    )
    if is_workdir(root):
        return [root]
    found, level = [], [root]
    for _ in range(max_depth):  # breadth first; a workdir's own subfolders are not searched
        subs = [
            e.path
            for d in level
            for e in sorted(os.scandir(d), key=lambda e: e.name)
            if e.is_dir() and not e.name.startswith(".")
        ]
        found += [p for p in subs if is_workdir(p)]
        level = [p for p in subs if not is_workdir(p)]
    return sorted(found)


def _genotype_file(spec, base_dir: str) -> str | None:
    """The file a config's ``genotype`` path names: absolute, cwd- or workdir-relative."""
    if not isinstance(spec, str) or not spec:
        return None
    return next((p for p in (spec, os.path.join(base_dir, spec)) if os.path.isfile(p)), None)


def _load_genotype(spec, base_dir: str) -> NetworkGenotype | None:
    """A genotype from a path (see ``_genotype_file``) or an inline JSON object."""
    try:
        if isinstance(spec, dict):
            data = {"format_version": 1, **(spec if "cells" in spec else {"cells": spec})}
            return NetworkGenotype.from_json(json.dumps(data))
        path = _genotype_file(spec, base_dir)
        return NetworkGenotype.load(path) if path else None
    except ValueError:
        return None


def _marker(path: str, config, name: str) -> dict | None:
    """The marker file `name` (``random_search.json``: a random-search baseline;
    ``milestone.json``: a cell along the search) in the workdir, or beside the genotype
    file it trained (launch/sweep.py writes each such genotype once, with its marker, and
    points every run of it there); None without one."""
    genotype = _genotype_file(config.get("genotype") if isinstance(config, dict) else None, path)
    places = [path] + ([os.path.dirname(genotype)] if genotype else [])
    found = next(
        (os.path.join(d, name) for d in places if os.path.isfile(os.path.join(d, name))), None
    )
    if found is None:
        return None
    with open(found) as f:
        marker = json.load(f)
    if not isinstance(marker, dict):
        raise ValueError(f"{name} must hold a JSON object")
    return marker


def _method(marker, milestone, network: str, genotype_config) -> str:
    """How a run's network came about: the report's grouping of runs."""
    if marker is not None:
        return "random cell"
    if milestone:
        return "milestone cell"
    if network in BASELINES:
        return network
    if genotype_config:
        return "darts cell"
    if network.startswith("darts"):
        return "search"
    return network or "unknown"


def load_run(path: str, name: str) -> Run:
    """Reads one workdir; raises ValueError naming the problem."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        rows = read_metrics(os.path.join(path, "metrics.csv"))
        history, hist = [], os.path.join(path, "alpha_history.jsonl")
        if not isinstance(config, dict):
            raise ValueError("config.json must hold a JSON object")
        marker = _marker(path, config, "random_search.json")
        milestone = None if marker else _marker(path, config, "milestone.json")
        for line in pathlib.Path(hist).read_text().splitlines() if os.path.isfile(hist) else []:
            try:
                rec = json.loads(line)
                history.append((float(rec["env_steps"]), rec["alphas"]))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line of a killed run
    except (OSError, ValueError) as e:
        raise ValueError(f"unreadable run files: {e}") from None
    network, geno_cfg = str(config.get("network", "")), config.get("genotype") or ""
    method = _method(marker, milestone, network, geno_cfg)
    genotype = (
        _load_genotype((marker or milestone or {}).get("genotype"), path)
        or _load_genotype(geno_cfg, path)
        or _load_genotype(os.path.join(path, "genotype.json"), path)
    )
    return Run(path, name, config, rows, method, genotype, marker, history, milestone)


def discover_runs(run_dirs: Sequence[str]) -> tuple[list[Run], list[str]]:
    """All runs under `run_dirs` (deduplicated) and 'path: reason' for skipped workdirs."""
    runs, skipped, seen = [], [], set()
    for root in run_dirs:
        for path in find_workdirs(root):
            if os.path.realpath(path) in seen:
                continue
            seen.add(os.path.realpath(path))
            name = os.path.normpath(
                os.path.join(os.path.basename(os.path.normpath(root)), os.path.relpath(path, root))
            )
            try:
                runs.append(load_run(path, name))
            except ValueError as e:
                skipped.append(f"{name}: {e}")
    runs.sort(key=lambda r: (r.game, r.method, r.agent, r.seed, r.name))
    return runs, skipped


def untrained_return(run: Run, key: str) -> float:
    """`key` on the run's evaluation before training (env step 0, ``eval.at_start``);
    NaN if the run has none."""
    rows = [r for r in run.eval_rows if not r.get("env_steps")]
    return as_number(rows[0].get(key), float("nan")) if rows else float("nan")


def final_return(run: Run, key: str) -> float:
    """Mean of `key` over the run's last LAST_EVALS evaluation rows after training began
    (NaN if none)."""
    trained = [r for r in run.eval_rows if r.get("env_steps")]
    vals = [v for r in trained[-LAST_EVALS:] if (v := as_number(r.get(key))) is not None]
    return float(np.mean(vals)) if vals else float("nan")
