"""Runs the experiment binaries as a user would (a subprocess from the repo root)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEARCH = "--config=experiments/configs/search.py:smoke"
TRAIN = "--config=experiments/configs/train.py:smoke"


def run_binary(binary, config, workdir, *overrides, check=True):
    cmd = [sys.executable, "-m", f"experiments.{binary}", config, f"--workdir={workdir}",
           *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc
