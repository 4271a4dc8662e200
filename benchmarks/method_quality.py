"""Search methods side by side on real Procgen: search, then retrain the found cell.

For each ``arch.method`` x seed: ``experiments.search`` at a preset (default cpu_demo,
the ``cpu_small`` protocol's runs), then ``experiments.train`` from the genotype file
alone at the same preset. Prints JSON: per run the search wall time, the found cell, and
the retrained cell's test return (mean of its last 3 evaluations, as the report), then
per method the means over seeds. Runs one after another (timings are comparable only
within one invocation on an otherwise idle machine); finished workdirs are reused.

    .venv/bin/python -m benchmarks.method_quality --methods darts,gdas --seeds 0,1 \
        --root runs/method_quality
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from rldarts.model.genotypes import NetworkGenotype
from rldarts.run.logger import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(binary, preset, workdir, *overrides):
    """Runs a binary unless its workdir already holds a finished run; wall seconds."""
    done = os.path.join(workdir, "done.json")
    if os.path.exists(done):
        return json.load(open(done))["wall_s"]
    config = f"--config=experiments/configs/{binary}.py:{preset}"
    cmd = [
        sys.executable,
        "-m",
        f"experiments.{binary}",
        config,
        f"--workdir={workdir}",
        *overrides,
    ]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    wall = round(time.time() - t0, 1)
    with open(done, "w") as f:
        json.dump({"wall_s": wall, "command": " ".join(cmd)}, f)
    return wall


def _final_test_return(workdir, last=3):
    rows = [
        r
        for r in read_metrics(os.path.join(workdir, "metrics.csv"))
        if r.get("episode_return_test") is not None
    ]
    return float(np.mean([r["episode_return_test"] for r in rows[-last:]]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="darts,gdas")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--preset", default="cpu_demo")
    ap.add_argument("--game", default="starpilot")
    ap.add_argument("--root", default="runs/method_quality")
    args = ap.parse_args()
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):  # seed-major: partial runs pair up
        for method in args.methods.split(","):
            base = os.path.abspath(os.path.join(args.root, method, f"seed{seed}"))
            common = (f"--config.env_name={args.game}", f"--config.seed={seed}")
            search_s = _run(
                "search",
                args.preset,
                os.path.join(base, "search"),
                *common,
                f"--config.arch.method={method}",
            )
            genotype = os.path.join(base, "search", "genotype.json")
            retrain_s = _run(
                "train",
                args.preset,
                os.path.join(base, "retrain"),
                *common,
                f"--config.genotype={genotype}",
            )
            cells = NetworkGenotype.load(genotype).cells
            runs.append(
                {
                    "method": method,
                    "seed": seed,
                    "search_wall_s": search_s,
                    "retrain_wall_s": retrain_s,
                    "search_test_return": _final_test_return(os.path.join(base, "search")),
                    "retrained_test_return": _final_test_return(os.path.join(base, "retrain")),
                    "cells": {t: [list(map(list, n)) for n in c.nodes] for t, c in cells.items()},
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for method in args.methods.split(","):
        mine = [r for r in runs if r["method"] == method]
        summary[method] = {
            k: round(float(np.mean([r[k] for r in mine])), 3)
            for k in (
                "search_wall_s",
                "retrain_wall_s",
                "search_test_return",
                "retrained_test_return",
            )
        }
    print(json.dumps({"preset": args.preset, "game": args.game, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
