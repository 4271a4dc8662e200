"""The binaries' life in a workdir, end to end (smoke preset): a second attempt on a
held workdir is refused, SIGTERM stops a search that the same command then resumes."""

import os
import signal
import subprocess
import sys
import time

from _binaries import ROOT, SEARCH, run_binary
from test_run_lifecycle import hold_lock

from rldarts.run import run_lifecycle
from rldarts.run.errors import EXIT_LOCKED
from rldarts.run.logger import read_metrics


def test_second_attempt_refused_then_runs_once_the_holder_is_killed(tmp_path):
    holder = hold_lock(tmp_path)  # an older attempt, still alive
    try:
        proc = run_binary("search", SEARCH, tmp_path, check=False)
    finally:
        holder.kill()  # SIGKILL, as a lost node's binary would end
        holder.wait()
    assert proc.returncode == EXIT_LOCKED, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: workdir {tmp_path} is in use by another attempt (pid ")
    assert f"pid {holder.pid} " in last and "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == [run_lifecycle.LOCK_FILE]  # nothing written
    run_binary("search", SEARCH, tmp_path, "--config.total_env_steps=256")
    assert len(read_metrics(tmp_path / "metrics.csv")) == 1


def test_sigterm_stops_within_30s_and_the_same_command_resumes(tmp_path):
    # A checkpoint every iteration: the first row is followed by checkpoint 1 in the
    # same iteration, so the stop (at the next iteration's start) always has one.
    every = "--config.log.checkpoint_every_iterations=1"
    straight = tmp_path / "straight"
    run_binary("search", SEARCH, straight, every)
    work = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "experiments.search", SEARCH, f"--workdir={work}", every]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = work / "metrics.csv"
    while proc.poll() is None and not (metrics.exists() and read_metrics(metrics)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # after iteration 1's row, before the run ends
    t0 = time.time()
    out, err = proc.communicate(timeout=120)
    stopped_s = time.time() - t0
    print(f"SIGTERM to exit: {stopped_s:.1f} s")
    assert proc.returncode == 143, err[-2000:]
    assert stopped_s < 30
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted by SIGTERM") and "same command" in last
    assert len(read_metrics(metrics)) < 3
    resumed = run_binary("search", SEARCH, work, every)
    assert "resuming" in resumed.stdout + resumed.stderr
    a, b = read_metrics(metrics), read_metrics(straight / "metrics.csv")
    assert [r["env_steps"] for r in a] == [r["env_steps"] for r in b] == [256, 512, 768]
    for x, y in zip(a, b):
        for key in ("loss", "policy_loss", "value_loss", "alpha_entropy", "episode_return_test"):
            assert x[key] == y[key], (key, x[key], y[key])
