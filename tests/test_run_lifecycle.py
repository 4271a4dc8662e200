"""One attempt per workdir (the lock) and the stop on SIGTERM / SIGINT, in isolation
(rldarts/run/run_lifecycle.py); the binaries' side is in test_experiments_lifecycle.py."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from rldarts.run import run_lifecycle
from rldarts.run.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hold_lock(workdir) -> subprocess.Popen:
    """Another attempt: a process that holds ``workdir`` until it is killed."""
    code = (
        "import sys, time; from rldarts.run import run_lifecycle\n"
        "with run_lifecycle.exclusive(sys.argv[1]):\n"
        "    print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(workdir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_attempt_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path):
    work = tmp_path / "w"
    holder = hold_lock(work)
    try:
        assert f"pid {holder.pid} on {socket.gethostname()}" in run_lifecycle.holder(str(work))
        with pytest.raises(run_lifecycle.WorkdirLocked) as refused:
            with run_lifecycle.exclusive(str(work)):
                raise AssertionError("ran beside the holder")
        text = str(refused.value)
        assert str(work) in text and f"pid {holder.pid}" in text and "\n" not in text
        assert os.listdir(work) == [run_lifecycle.LOCK_FILE]
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    assert run_lifecycle.holder(str(work)) is None
    with run_lifecycle.exclusive(str(work)):
        assert run_lifecycle.holder(str(work)) is None  # ours: not "another attempt"
        assert "pid" in (work / run_lifecycle.LOCK_FILE).read_text()


def test_multi_process_attempt_stops_on_every_process_when_one_lock_is_held(tmp_path):
    holder = hold_lock(tmp_path)  # process 0 of an old attempt is alive
    try:
        # This process is process 1: its own lock is free, but process 0's is not.
        agree = lambda ok: [False, ok]
        with pytest.raises(run_lifecycle.WorkdirLocked, match=f"pid {holder.pid}"):
            with run_lifecycle.exclusive(str(tmp_path), process=1, agree=agree):
                raise AssertionError("ran beside the holder")
        with run_lifecycle.exclusive(str(tmp_path), process=1):
            pass  # its own lock was released again
    finally:
        holder.kill()
        holder.wait()


def test_debris_of_a_live_attempt_is_not_removed(tmp_path):
    ckpt = Checkpointer(tmp_path / "checkpoints", {"a": 1})
    in_flight = tmp_path / "checkpoints" / "4.orbax-checkpoint-tmp-123"
    in_flight.mkdir()
    holder = hold_lock(tmp_path)
    try:
        ckpt._remove_debris()
        assert in_flight.exists()  # the holder may be writing it right now
    finally:
        holder.kill()
        holder.wait()
    ckpt._remove_debris()
    assert not in_flight.exists()
    ckpt.close()


_STOPPABLE = """
import sys, time
from rldarts.run import run_lifecycle
mode, grace = sys.argv[1], float(sys.argv[2])
try:
    with run_lifecycle.stop_on_signals(grace):
        print('ready', flush=True)
        for _ in range(600):
            if mode == 'loop':
                run_lifecycle.check_interrupt()
            time.sleep(0.1)  # 'blocked': never checks, as a run stuck in a collective
except run_lifecycle.Interrupted as e:
    print('interrupted', e, flush=True)
    sys.exit(e.exit_code)
"""


def _signal_and_time(mode, grace, signums):
    proc = subprocess.Popen(
        [sys.executable, "-c", _STOPPABLE, mode, str(grace)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.time()
    for s in signums:
        proc.send_signal(s)
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, time.time() - t0, out, err


def test_signal_stops_between_steps_or_after_the_grace_period():
    rc, dt, out, _ = _signal_and_time("loop", 30, [signal.SIGTERM])
    assert (rc, out.strip()) == (143, "interrupted SIGTERM") and dt < 5
    rc, dt, out, _ = _signal_and_time("loop", 30, [signal.SIGINT])
    assert (rc, out.strip()) == (130, "interrupted SIGINT") and dt < 5
    # Blocked: the watchdog ends the process after the grace period, with one line.
    rc, dt, _, err = _signal_and_time("blocked", 2, [signal.SIGTERM])
    assert rc == 143 and 2 <= dt < 10, (rc, dt)
    assert err.strip().splitlines()[-1].startswith("error: interrupted by SIGTERM")
    # A second signal does not wait for the grace period.
    rc, dt, _, _ = _signal_and_time("blocked", 30, [signal.SIGTERM, signal.SIGTERM])
    assert rc == 143 and dt < 5, (rc, dt)


def test_multi_host_initialize_leaves_sigterm_fatal(tmp_path):
    """jax.distributed's preemption service used to swallow SIGTERM (the process kept
    running); parallel.initialize turns it off."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    code = (
        "import os, signal, time\n"
        "from ml_collections import ConfigDict\n"
        "from rldarts.learn import parallel\n"
        f"parallel.initialize(ConfigDict(dict(coordinator_address='localhost:{port}', "
        "num_processes=1, process_id=0)))\n"
        "os.kill(os.getpid(), signal.SIGTERM); time.sleep(5); print('still running')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, proc.stdout)
