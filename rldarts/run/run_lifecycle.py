"""A run's life in its workdir: one attempt at a time (a lock), and a clean stop on
SIGTERM / SIGINT.

**The lock.** A retried attempt (a Ray task whose node was declared dead while its
binary still runs, a user starting the same command twice) must not run beside the
attempt it replaces: both would append to the same histories and checkpoints. Each
attempt holds ``fcntl.flock`` on ``<workdir>/run.lock`` for its whole life; the kernel
drops the lock when the process dies, however it dies, so a crash never leaves a
stale lock. The holder writes ``pid host start`` into the file for the refusal line.
Multi-host: every process locks its own file (``run.lock`` for process 0,
``run.lock.<i>`` for process i) and the processes agree before going on, so a new
attempt stops on every process as soon as any process of an old one still lives.
flock works on local filesystems and on NFSv4 (Linux emulates it with byte-range
locks); on a filesystem without locks the attempt stops with the error.

**Signals.** JAX's preemption service (started by ``jax.distributed.initialize``)
installs a SIGTERM handler that only records the preemption, so a multi-host run used
to keep running after ``timeout``, Ray or a cluster scheduler asked it to stop;
``parallel.initialize`` now turns that service off. While a run holds its workdir,
the first SIGTERM / SIGINT sets a flag that the driver checks between iterations
(``check_interrupt``: the iteration in progress finishes, or is abandoned, and
nothing half-written is left: every file is written then renamed); a watchdog thread
woken by the signal itself (``signal.set_wakeup_fd``, so it also wakes while the main
thread is blocked in a collective or a compile) ends the process after ``GRACE_S``
seconds, and a second signal ends it at once. Either way the exit status is
128 + the signal (143 SIGTERM, 130 SIGINT) and the same command resumes from the last
checkpoint.

No JAX here: the sweep engines import this module to wait for a locked workdir.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

from rldarts.run.errors import EXIT_LOCKED

LOCK_FILE = "run.lock"
GRACE_S = 20.0  # first signal to forced exit: under the 30 s schedulers usually allow
_held: dict[str, int] = {}  # realpath of a workdir -> fd of the lock this process holds


class WorkdirLocked(RuntimeError):
    """Another live attempt holds the workdir."""

    exit_code = EXIT_LOCKED


class Interrupted(RuntimeError):
    """SIGTERM / SIGINT arrived; the run stopped between two iterations."""

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(signal.Signals(signum).name)


def lock_path(workdir: str, process: int = 0) -> str:
    return os.path.join(workdir, LOCK_FILE + (f".{process}" if process else ""))


def _read_holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = " ".join(f.read().split())
    except OSError:
        text = ""
    return text or "unknown holder"


def holder(workdir: str, process: int = 0) -> str | None:
    """'pid P on HOST since T' of the live attempt holding ``workdir``; None when free
    (or held by this process). Opens the lock file read-only: never creates it."""
    path = lock_path(workdir, process)
    if os.path.realpath(workdir) in _held:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _read_holder(path)
    finally:
        os.close(fd)  # closing drops our shared lock, if we got it


def _acquire(workdir: str, process: int) -> int | None:
    """The fd of the lock, or None when another attempt holds it. Creates the workdir
    and the lock file only; writes the holder line only once the lock is ours."""
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(lock_path(workdir, process), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    line = (
        f"pid {os.getpid()} on {socket.gethostname()} since "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %z')}\n"
    )
    # In place, not write-then-rename: a renamed file would be a new inode, unlocked.
    os.ftruncate(fd, 0)
    os.pwrite(fd, line.encode(), 0)
    return fd


@contextlib.contextmanager
def exclusive(workdir: str, process: int = 0, agree: Callable[[bool], list] | None = None):
    """Holds the workdir for the ``with`` block, or raises WorkdirLocked (one line
    naming the workdir and the holder) before anything but the lock file is written.
    ``agree(ok) -> [ok of every process]`` (multi-host) makes all processes stop when
    any of them found its lock held."""
    workdir = os.path.abspath(workdir)
    key = os.path.realpath(workdir)
    if key in _held:  # already ours (a nested run in this process): nothing to take
        yield
        return
    fd = _acquire(workdir, process)
    everyone = agree(fd is not None) if agree else [fd is not None]
    if not all(everyone):
        if fd is not None:
            os.close(fd)
        who = [i for i, ok in enumerate(everyone) if not ok]
        raise WorkdirLocked(
            f"workdir {workdir} is in use by another attempt "
            f"({_read_holder(lock_path(workdir, who[0]))}"
            + (f", process {who[0]}" if who[0] else "")
            + "); nothing was written. Wait for it to end (or end it) and run the "
            "same command again"
        )
    _held[key] = fd
    try:
        yield
    finally:
        del _held[key]
        os.close(fd)  # releases the lock; the file stays (deleting it would race a taker)


def locked_by_another(workdir: str) -> bool:
    """Whether a live attempt other than this process holds ``workdir``."""
    return holder(workdir) is not None


# --------------------------------------------------------------------------- signals
_interrupt: list[int] = []  # the first signal received, once one was


def _watchdog(read_fd: int, grace_s: float) -> None:
    """Woken by the signal byte itself, even while the main thread sits in C code."""
    while True:  # every Python-handled signal writes its byte: wait for ours
        try:
            data = os.read(read_fd, 1)
        except OSError:
            return
        if not data:
            os.close(read_fd)
            return  # the wakeup pipe was closed: the run ended
        if data[0] in (signal.SIGTERM, signal.SIGINT):
            break
    signum = data[0]
    time.sleep(grace_s)
    sys.stderr.write(
        f"error: interrupted by {signal.Signals(signum).name}; the step in progress did "
        f"not end within {grace_s:g} s and was abandoned; run the same command to "
        "resume from the last checkpoint\n"
    )
    sys.stderr.flush()
    os._exit(128 + signum)


def _on_signal(signum, frame) -> None:
    if _interrupt:  # the second signal: stop now
        os._exit(128 + _interrupt[0])
    _interrupt.append(signum)


@contextlib.contextmanager
def stop_on_signals(grace_s: float = GRACE_S):
    """SIGTERM / SIGINT stop the run between iterations (see the module docstring).
    Outside the main thread (signals cannot be handled there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signums = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, _on_signal) for s in signums}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watchdog, args=(read_fd, grace_s), daemon=True).start()
    _interrupt.clear()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        if not _interrupt:
            os.close(write_fd)  # ends the watchdog; after a signal it keeps its timer
        _interrupt.clear()


def check_interrupt(agree: Callable[[bool], list] | None = None) -> None:
    """Raises Interrupted once a signal arrived (multi-host: on any process, via
    ``agree``, so every process stops at the same iteration)."""
    mine = _interrupt[0] if _interrupt else 0
    signums = agree(mine) if agree else [mine]
    hit = [s for s in signums if s]
    if hit:
        raise Interrupted(hit[0])
