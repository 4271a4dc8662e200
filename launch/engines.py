"""Where the runs of a sweep execute: one after another here (`local`), or as Ray tasks.

Both engines run the command line a user would type (``Run.argv``, from the repo root)
as a subprocess whose stdout+stderr go to ``<workdir>/sweep.log`` (the local engine also
echoes them). Each attempt opens the log with a header line, so the attempts and wall
time of a run can be read back from its log wherever it ran. What an exit status means
(rldarts/run/errors.py):
* 0: done.
* a refusal (``EXIT_REFUSED``: bad input, a checkpoint of another config, a NaN loss;
  ``EXIT_USAGE``): the same command fails the same way again, so it is not retried
  (the end table says ``failed (not retried: deterministic)``).
* ``EXIT_LOCKED``: another attempt still holds the workdir (a Ray retry beside a binary
  on a node declared dead): the engine waits until the lock is free, up to
  ``LOCK_WAIT_S``, and starts the run again, which resumes or finds it finished; not
  counted as a retry. Still locked after the wait: skipped, not failed.
* anything else (a crash, a kill, 143 after SIGTERM): retried up to ``max_retries``
  times; the binaries resume from the workdir's last checkpoint.
Ray is imported only by `RayEngine`.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import threading
import time

from launch.plan import Run
from launch.scheduler import DONE, FAILED, SKIPPED, Result
from rldarts.run import compile_cache, run_lifecycle
from rldarts.run.errors import DETERMINISTIC_EXITS, EXIT_LOCKED

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_FILE = "sweep.log"
# Test hook: a workdir relative to --root whose first attempt kills itself (the binary,
# then under Ray the worker, as a dying node would) once a new checkpoint appears.
KILL_HOOK_ENV = "RLDARTS_SWEEP_TEST_KILL_AFTER_CHECKPOINT"
_HEADER = re.compile(r"^=== sweep (\S+) attempt start ([0-9.]+) ")
ENGINES = ("local", "ray")
LOCK_WAIT_S = 6 * 3600.0  # how long a run waits for an old attempt holding its workdir
LOCK_POLL_S = 10.0


def gpu_env(gpus_per_run: float) -> dict:
    """XLA settings that let several runs share a GPU: no preallocation of (by default)
    75% of its memory, and each run capped at its share."""
    if 0.0 < gpus_per_run < 1.0:
        return {
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
            "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{gpus_per_run:g}",
        }
    return {}


def attempt_starts(log_path: str, sweep_id: str) -> list[float]:
    """Start times (epoch s) of this sweep's attempts, read from a run's log."""
    try:
        with open(log_path, errors="replace") as f:
            return [
                float(m.group(2))
                for line in f
                if (m := _HEADER.match(line)) and m.group(1) == sweep_id
            ]
    except OSError:
        return []


def _checkpoint_steps(workdir: str) -> set[str]:
    d = os.path.join(workdir, "checkpoints")
    return {n for n in os.listdir(d) if n.isdigit()} if os.path.isdir(d) else set()


def _die_with_parent() -> None:
    """Linux: the binary gets SIGKILL when its parent (sweep or Ray worker) dies, so a
    retry never shares a workdir with an orphan of the previous attempt."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def execute(
    run: Run,
    sweep_id: str,
    extra_env: dict | None = None,
    kill_after_checkpoint: bool = False,
    echo=None,
    after_kill=None,
) -> int:
    """One attempt of `run`: its binary as a subprocess, output appended to its log;
    returns the exit code. The test hook (first attempt only) kills the binary when a
    new checkpoint step appears, then calls ``after_kill``."""
    os.makedirs(run.workdir, exist_ok=True)
    path = os.path.join(run.workdir, LOG_FILE)
    with open(path, "a", buffering=1, errors="replace") as log:
        log.write(
            f"=== sweep {sweep_id} attempt start {time.time():.3f} on "
            f"{socket.gethostname()} ===\n{run.command}\n"
        )
        hook = kill_after_checkpoint and len(attempt_starts(path, sweep_id)) == 1
        before = _checkpoint_steps(run.workdir)
        proc = subprocess.Popen(
            run.argv,
            cwd=REPO,
            env={**os.environ, **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            preexec_fn=_die_with_parent,
        )

        def copy():
            for line in proc.stdout:
                log.write(line)
                if echo:
                    echo(line.rstrip("\n"))

        reader = threading.Thread(target=copy, daemon=True)
        reader.start()
        killed = False
        while proc.poll() is None:
            if hook and _checkpoint_steps(run.workdir) - before:
                proc.kill()
                killed = True
                break
            time.sleep(0.05)
        rc = proc.wait()
        reader.join()
        log.write(
            f"=== exit {rc}"
            + (" (test hook: killed after its first checkpoint)" if killed else "")
            + " ===\n"
        )
    if killed and after_kill:
        after_kill()
    return rc


def _wait_unlocked(workdir: str, deadline: float, poll_s: float) -> bool:
    """Whether the attempt holding ``workdir`` ended before ``deadline``."""
    while run_lifecycle.holder(workdir) is not None:
        if time.time() >= deadline:
            return False
        time.sleep(poll_s)
    return True


def attempt(
    run: Run, sweep_id: str, wait_s: float = LOCK_WAIT_S, poll_s: float = LOCK_POLL_S, **kw
) -> int:
    """``execute``, started again each time another attempt held the workdir and let
    go of it within ``wait_s``; the exit status of the last execution."""
    deadline = time.time() + wait_s
    while True:
        rc = execute(run, sweep_id, **kw)
        if rc != EXIT_LOCKED or not _wait_unlocked(run.workdir, deadline, poll_s):
            return rc


def retried(rc: int) -> bool:
    """Whether an attempt that ended with ``rc`` is worth another one."""
    return rc != 0 and rc not in DETERMINISTIC_EXITS and rc != EXIT_LOCKED


def _last_error(log_path: str) -> str:
    """The binary's one-line refusal (the last ``error:`` line of its log), if any."""
    try:
        with open(log_path, errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.startswith("error:")]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _result(run: Run, sweep_id: str, rc: int | None, note: str = "") -> Result:
    """The Result of a run whose last attempt ended with ``rc`` (None: no exit status,
    e.g. a Ray task lost with its node; ``note`` says why)."""
    log_path = os.path.join(run.workdir, LOG_FILE)
    starts = attempt_starts(log_path, sweep_id)
    state, deterministic = (DONE, False) if rc == 0 else (FAILED, False)
    if rc in DETERMINISTIC_EXITS:
        deterministic = True
        note = f"exit {rc}: {_last_error(log_path) or 'refused'}; log: {log_path}"
    elif rc == EXIT_LOCKED:
        state = SKIPPED
        note = (
            f"workdir still held by another attempt "
            f"({run_lifecycle.holder(run.workdir) or 'it has just ended'}); log: {log_path}"
        )
    elif rc:
        note = f"exit {rc}; log: {log_path}"
    return Result(
        run,
        state,
        time.time() - starts[0] if starts else None,
        len(starts),
        note,
        finished=rc == 0,
        deterministic=deterministic,
    )


class LocalEngine:
    """One run at a time in this process, retried in place."""

    capacity = 1

    def __init__(
        self,
        sweep_id: str,
        max_retries: int = 0,
        kill_workdir: str | None = None,
        log=print,
        echo=print,
    ):
        self.sweep_id, self.max_retries, self.kill_workdir = sweep_id, max_retries, kill_workdir
        self.log, self.echo, self._done = log, echo, {}
        self.lock_wait_s, self.lock_poll_s = LOCK_WAIT_S, LOCK_POLL_S

    def submit(self, run: Run):
        for n in range(self.max_retries + 1):
            rc = attempt(
                run,
                self.sweep_id,
                self.lock_wait_s,
                self.lock_poll_s,
                echo=self.echo,
                kill_after_checkpoint=run.workdir == self.kill_workdir,
            )
            if not retried(rc) or n == self.max_retries:
                break
            self.log(f"# exit {rc}: retry {n + 1} of {self.max_retries}, {run.title}")
        handle = object()
        self._done[handle] = _result(run, self.sweep_id, rc)
        return handle

    def wait(self, handles):
        return handles[0], self._done.pop(handles[0])

    def close(self):
        pass


class RunFailed(RuntimeError):
    pass


def _ray_attempt(run: Run, sweep_id: str, extra_env: dict, kill: bool, **wait) -> int:
    """Body of the Ray task: one attempt; an exception (or a dead worker) makes Ray
    retry it, so only failures worth a retry raise (``retried``); a refusal or a
    workdir still locked returns its exit status. The hook exits the worker the way a
    lost node would end it."""
    rc = attempt(
        run,
        sweep_id,
        extra_env=extra_env,
        kill_after_checkpoint=kill,
        after_kill=lambda: os._exit(1),
        **wait,
    )
    if retried(rc):
        raise RunFailed(f"exit {rc}; log: {os.path.join(run.workdir, LOG_FILE)}")
    return rc


class RayEngine:
    """Each run is a Ray task with the given CPUs/GPUs; Ray queues them by resources.

    address '' starts a local Ray instance (``num_cpus`` of this machine's cores, 0: all;
    ``num_gpus``: None detects them, a number declares them); 'auto' or 'host:port' joins
    a cluster. The workers import this module from the repo
    (PYTHONPATH), and run the binaries from it: the repo, its virtualenv and --root must
    be at the same paths on every node (--root on a shared filesystem)."""

    capacity = None

    def __init__(
        self,
        sweep_id: str,
        address: str = "",
        num_cpus: int = 0,
        cpus_per_run: float = 1.0,
        gpus_per_run: float = 0.0,
        max_retries: int = 2,
        kill_workdir: str | None = None,
        num_gpus: float | None = None,
    ):
        import ray  # only this engine needs Ray

        self.ray, self.sweep_id, self.kill_workdir = ray, sweep_id, kill_workdir
        path = os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        env_vars = {"PYTHONPATH": path}
        # The compilation cache the user chose, on every node (created there if missing).
        env_vars.update({k: os.environ[k] for k in compile_cache.ENV_VARS if k in os.environ})
        kwargs = {"runtime_env": {"env_vars": env_vars}}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(
                address="local",
                num_cpus=num_cpus or None,
                num_gpus=num_gpus,
                include_dashboard=False,
                **kwargs,
            )
        self.env = gpu_env(gpus_per_run)
        self.task = ray.remote(_ray_attempt).options(
            num_cpus=cpus_per_run,
            num_gpus=gpus_per_run,
            max_retries=max_retries,
            retry_exceptions=True,
        )
        self.refs = {}

    def submit(self, run: Run):
        ref = self.task.remote(run, self.sweep_id, self.env, run.workdir == self.kill_workdir)
        self.refs[ref] = run
        return ref

    def wait(self, handles):
        [ref], _ = self.ray.wait(handles, num_returns=1)
        run = self.refs.pop(ref)
        try:
            return ref, _result(run, self.sweep_id, self.ray.get(ref))
        except self.ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None)  # RayTaskError: our RunFailed
            note = (
                str(cause)
                if isinstance(cause, RunFailed)
                else (str(e).strip().splitlines() or [type(e).__name__])[0]
            )
            return ref, _result(run, self.sweep_id, None, note)

    def close(self):
        self.ray.shutdown()


def make_engine(name: str, sweep_id: str, **options):
    if name == "local":
        return LocalEngine(
            sweep_id,
            options.get("max_retries", 0),
            options.get("kill_workdir"),
            options.get("log", print),
            options.get("echo", print),
        )
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError("--engine=ray needs Ray: pip install 'ray>=2.9'") from None
        keys = (
            "address",
            "num_cpus",
            "num_gpus",
            "cpus_per_run",
            "gpus_per_run",
            "max_retries",
            "kill_workdir",
        )
        return RayEngine(sweep_id, **{k: options[k] for k in keys if k in options})
    raise ValueError(f"unknown engine {name!r}; valid engines: {', '.join(ENGINES)}")


def new_sweep_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
