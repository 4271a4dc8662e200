"""Multi-host DQN end to end: 2 CPU processes on localhost (gloo collectives), the smoke
search with ``agent=dqn`` set up so that the two processes' replays reach
``min_replay_size`` at different env steps (n_step 20: an episode end releases up to 20
transitions early, and the processes' envs end episodes at different steps).

What it guards: no deadlock (every learner step is a collective, so the start of
learning must be agreed), the configured env steps in total over both processes, one
replay file per process that each process resumes from, and a resume with another
process count refused in one line.
"""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.configs import search
from rldarts.run import experiment
from rldarts.run.checkpoint import CheckpointMismatchError
from rldarts.run.logger import read_metrics
from tests._binaries import ROOT, SEARCH

DQN = (
    "--config.agent=dqn",
    "--config.dqn.n_step=20",
    "--config.dqn.min_replay_size=320",
    "--config.dqn.samples_per_insert=4",
    # Runtime: evaluation, plots and TensorBoard only where a run ends.
    "--config.eval.every_iterations=100",
    "--config.eval.num_envs=1",
    "--config.eval.num_episodes=1",
    "--config.log.genotype_every_iterations=100",
    "--config.log.tensorboard=False",
)
TIMEOUT_S = 420  # both processes together; a deadlock fails here instead of hanging CI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _command(workdir, *overrides):
    return [sys.executable, "-m", "experiments.search", SEARCH, f"--workdir={workdir}", *overrides]


def _two_processes(workdir, *overrides):
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1")
    procs = [
        subprocess.Popen(
            _command(
                workdir,
                f"--config.parallel.coordinator_address=localhost:{port}",
                "--config.parallel.num_processes=2",
                f"--config.parallel.process_id={i}",
                *DQN,
                *overrides,
            ),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + TIMEOUT_S
    outs = []
    try:
        for i, p in enumerate(procs):
            try:
                out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"process {i} still running after {TIMEOUT_S} s: deadlock"
                ) from None
            assert p.returncode == 0, err[-3000:]
            outs.append(out + err)
    finally:
        for p in procs:
            p.kill()
    return outs


def _replays(ckpt, step):
    """{(process, group): (env steps added, obs ring)} of checkpoint ``step``'s files."""
    out = {}
    for name in os.listdir(ckpt):
        if name.startswith(f"replay_{step}_"):
            p, g = name[: -len(".npz")].split("_")[2:]
            with np.load(ckpt / name) as z:
                out[int(p[1:]), int(g[1:])] = (int(z["num_steps"] * z["cfg_num_envs"]), z["obs"])
    return out


def test_two_process_dqn_finishes_counts_env_steps_and_resumes_own_replays(tmp_path):
    ckpt = tmp_path / "checkpoints"
    _two_processes(tmp_path, "--config.total_env_steps=512")
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["env_steps"] for r in rows] == [256, 512]
    assert rows[-1]["learner_steps"] > 0  # learning started (at the same step everywhere)
    first = _replays(ckpt, 2)
    # One file per process (joint mode: one env group); the rings count the env steps
    # actually taken: 512 over both processes, 256 each.
    assert sorted(first) == [(0, 0), (1, 0)]
    assert [first[p, 0][0] for p in (0, 1)] == [256, 256]

    # Another process count cannot resume this run: one line, nothing written (in this
    # pytest process: one process, no coordinator).
    before = (tmp_path / "metrics.csv").read_text()
    c = search.get_config("smoke")
    for flag in DQN:
        key, value = flag[len("--config.") :].split("=")
        section, leaf = key.rsplit(".", 1) if "." in key else ("", key)
        target = c[section] if section else c
        target[leaf] = type(target[leaf])(value) if value != "False" else False
    with pytest.raises(CheckpointMismatchError) as err:
        experiment.run(c, str(tmp_path), require_supernet=True)
    assert str(err.value) == (
        f"checkpoint in {ckpt} was made with a different config: "
        "parallel.num_processes: 2 (checkpoint) vs 1 (now)"
    )
    assert (tmp_path / "metrics.csv").read_text() == before

    outs = _two_processes(tmp_path, "--config.total_env_steps=768")
    assert "resuming" in outs[0] and "refills" not in outs[0]
    assert [r["env_steps"] for r in read_metrics(tmp_path / "metrics.csv")] == [256, 512, 768]
    last = _replays(ckpt, 3)
    assert sum(n for n, _ in last.values()) == 768
    # Each process continued its own ring: its first 64 rows are the ones it saved at
    # checkpoint 2 (the two processes' envs differ, so the other file would not match).
    for p in (0, 1):
        np.testing.assert_array_equal(last[p, 0][1][:64], first[p, 0][1][:64])
        assert not np.array_equal(last[p, 0][1][:64], first[1 - p, 0][1][:64])
    assert sorted(_replays(ckpt, 2)) == [(0, 0), (1, 0)]  # checkpoint 2 kept, both files


def test_fingerprint_holds_the_actual_process_count(monkeypatch):
    """The resume guard compares the run's real process count: 1 without a coordinator
    (whatever num_processes says) and jax.process_count() under ``auto``, whose
    configured num_processes the platform overrides."""
    import jax

    from rldarts.run import config_checks

    c = search.get_config("smoke")
    c.parallel.num_processes = 4
    assert config_checks.fingerprint(c)["parallel"]["num_processes"] == 1
    c.parallel.coordinator_address = "auto"
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    assert config_checks.fingerprint(c)["parallel"]["num_processes"] == 3
