"""Runs the experiment binaries as a user would (a subprocess from the repo root); loads
launch/sweep.py for the tests that call it in-process."""

import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEARCH = "--config=experiments/configs/search.py:smoke"
TRAIN = "--config=experiments/configs/train.py:smoke"


def run_binary(binary, config, workdir, *overrides, check=True):
    cmd = [
        sys.executable,
        "-m",
        f"experiments.{binary}",
        config,
        f"--workdir={workdir}",
        *overrides,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


def load_sweep_module():
    """launch/sweep.py, executed once per process (it defines absl flags, so a second
    execution in the same pytest worker would fail)."""
    if "launch_sweep" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "launch_sweep", os.path.join(ROOT, "launch", "sweep.py")
        )
        module = sys.modules["launch_sweep"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["launch_sweep"]
