"""The async actor and multi-host runs end to end on real Procgen (smoke preset).

* ``parallel.async_actor``: the actor thread acts one update behind (``policy_lag`` 1,
  0 on the first iteration of each env segment), and a run resumed from a checkpoint
  makes exactly the rows of the uninterrupted run (what WORKSPACE.md promises).
* Multi-host: two processes on localhost (CPU collectives through gloo), one device
  each, run one search together; process 0 writes, the checkpoint holds both processes'
  host states, and the pair resumes from it.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from rldarts.run.logger import read_metrics
from tests._binaries import ROOT, SEARCH, run_binary

ASYNC = "--config.parallel.async_actor=True"
COMPARED = (
    "loss",
    "policy_loss",
    "value_loss",
    "alpha_entropy",
    "episode_return_train",
    "episode_return_test",
    "policy_lag",
)


def test_async_actor_one_update_behind_and_exact_resume(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_binary("search", SEARCH, straight, ASYNC, "--config.total_env_steps=1024")
    rows = read_metrics(straight / "metrics.csv")
    # Checkpoints every 2 iterations: each segment starts with a synchronous rollout.
    assert [r["policy_lag"] for r in rows] == [0.0, 1.0, 0.0, 1.0]
    assert all(np.isfinite(r["loss"]) for r in rows)
    run_binary("search", SEARCH, resumed, ASYNC, "--config.total_env_steps=512")
    proc = run_binary("search", SEARCH, resumed, ASYNC, "--config.total_env_steps=1024")
    assert "resuming" in proc.stdout + proc.stderr
    again = read_metrics(resumed / "metrics.csv")
    assert [r["env_steps"] for r in again] == [256, 512, 768, 1024]
    for a, b in zip(again, rows):
        for key in COMPARED:
            assert a[key] == b[key], (a["iteration"], key, a[key], b[key])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(workdir, *overrides):
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.search",
                SEARCH,
                f"--workdir={workdir}",
                f"--config.parallel.coordinator_address=localhost:{port}",
                "--config.parallel.num_processes=2",
                f"--config.parallel.process_id={i}",
                *overrides,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-3000:]
            outs.append(out + err)
    finally:
        for p in procs:
            p.kill()
    return outs


def test_two_process_multi_host_search_and_resume(tmp_path):
    outs = _two_processes(tmp_path, "--config.total_env_steps=512")
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["env_steps"] for r in rows] == [256, 512]  # 8 envs: 4 per process
    assert "steps 512/512" in outs[0] and "steps 512/512" not in outs[1]  # 0 reports
    host = json.load(open(tmp_path / "checkpoints" / "2" / "host" / "metadata"))
    processes = host["host_state"]["processes"]
    assert len(processes) == 2 and processes[0]["actor"]["key"] != processes[1]["actor"]["key"]
    assert (tmp_path / "genotype.json").exists()
    outs = _two_processes(tmp_path, "--config.total_env_steps=768")
    assert "resuming" in outs[0]
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["env_steps"] for r in rows] == [256, 512, 768]
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "3", "fingerprint.json"]
