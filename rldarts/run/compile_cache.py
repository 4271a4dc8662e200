"""The persistent XLA compilation cache the binaries share: every run, retry and resume
after the first loads its compiled programs from disk instead of compiling them again.

Where it lives (first match wins):
* ``RLDARTS_COMPILATION_CACHE=DIR``: that directory; ``=off`` turns the cache off;
* ``JAX_COMPILATION_CACHE_DIR`` (JAX's own variable, read by JAX itself): kept as set;
* otherwise ``$XDG_CACHE_HOME/rldarts/jax``, or ``~/.cache/rldarts/jax``.

It is JAX's own cache (keyed on the program, the devices, the compile options and the
JAX / XLA versions), so a cached program is the program a compile would give: it changes
no numbers. JAX writes only programs that took >= 1 s to compile; here every program is
written (a smoke run's programs compile in well under a second each but add up), unless
``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` is set. The directory grows without bound
(one entry per distinct program); deleting it is always safe.

`enable` is the one call a binary makes, before its first compile; the `CacheLog` it
returns counts JAX's cache events (``/jax/compilation_cache/...``) for the end-of-run line.
"""

from __future__ import annotations

import dataclasses
import os
import sys

ENV = "RLDARTS_COMPILATION_CACHE"
OFF = "off"
JAX_DIR_ENV = "JAX_COMPILATION_CACHE_DIR"
JAX_MIN_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
# What a process passes on so that its children (the sweep's Ray workers) use its cache.
ENV_VARS = (ENV, JAX_DIR_ENV, JAX_MIN_TIME_ENV)
# JAX's monitoring events (jax/_src/compiler.py, compilation_cache.py): a compile that
# consults the cache, one answered from it, one whose program was written to it, and the
# compile seconds a hit saved (the recorded compile time minus the read time).
_REQUEST = "/jax/compilation_cache/compile_requests_use_cache"
_HIT = "/jax/compilation_cache/cache_hits"
_WRITE = "/jax/compilation_cache/cache_misses"
_SAVED = "/jax/compilation_cache/compile_time_saved_sec"


def default_dir(environ: dict[str, str]) -> str:
    """``$XDG_CACHE_HOME/rldarts/jax``, or ``~/.cache/rldarts/jax`` when XDG_CACHE_HOME
    is unset, empty or relative (the XDG spec says to ignore a relative one)."""
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".cache")
    return os.path.join(base, "rldarts", "jax")


def resolve(environ: dict[str, str]) -> tuple[str | None, str]:
    """(the cache directory or None when off, where that choice came from)."""
    value = environ.get(ENV, "").strip()
    if value.lower() == OFF:
        return None, f"{ENV}={OFF}"
    if value:
        return os.path.abspath(os.path.expanduser(value)), ENV
    if environ.get(JAX_DIR_ENV):
        return os.path.abspath(environ[JAX_DIR_ENV]), JAX_DIR_ENV
    return default_dir(environ), "default"


def check_dir(path: str, source: str) -> None:
    """Creates `path` if needed; a ValueError in one line when it cannot hold the cache."""
    where = f"{source}={path}" if source != "default" else f"default cache dir {path}"
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"compilation cache: {where} is not a directory; point {ENV} at a "
            f"directory, or set {ENV}={OFF}"
        )
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"compilation cache: cannot create {where} ({e.strerror}); point {ENV} at a "
            f"writable directory, or set {ENV}={OFF}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(
            f"compilation cache: {where} is not writable; point {ENV} at a writable "
            f"directory, or set {ENV}={OFF}"
        )


@dataclasses.dataclass
class CacheLog:
    """What JAX's cache did in this process, from its monitoring events."""

    directory: str | None
    requests: int = 0
    hits: int = 0
    written: int = 0
    saved_s: float = 0.0

    @property
    def misses(self) -> int:
        return self.requests - self.hits

    def on_event(self, event: str, **_) -> None:
        if event == _REQUEST:
            self.requests += 1
        elif event == _HIT:
            self.hits += 1
        elif event == _WRITE:
            self.written += 1

    def on_duration(self, event: str, seconds: float, **_) -> None:
        if event == _SAVED:
            self.saved_s += seconds

    def summary(self) -> str:
        """The end-of-run line, e.g. ``compilation cache: 12 hits, 3 misses (3 programs
        written), 41.0 s of compiling saved, in /home/u/.cache/rldarts/jax``."""
        if self.directory is None:
            return f"compilation cache: off ({ENV}={OFF} or jax_enable_compilation_cache)"
        return (
            f"compilation cache: {self.hits} hits, {self.misses} misses "
            f"({self.written} programs written), {self.saved_s:.1f} s of compiling "
            f"saved, in {self.directory}"
        )


def enable(environ: dict[str, str] | None = None) -> CacheLog:
    """Turns on the persistent cache as `resolve` says (call before the first compile)
    and starts counting its hits. ValueError (one line) for a directory that cannot hold
    it; a default directory that cannot is only reported: the run goes on uncached."""
    import jax  # here, not at the top: the sweep driver reads ENV_VARS without JAX
    import jax.monitoring

    environ = os.environ if environ is None else environ
    directory, source = resolve(environ)
    if directory is not None:
        try:
            check_dir(directory, source)
        except ValueError as e:
            if source != "default":
                raise
            sys.stderr.write(f"warning: {e}; running without it\n")
            directory = None
    if directory is None or not jax.config.jax_enable_compilation_cache:
        jax.config.update("jax_enable_compilation_cache", False)
        return CacheLog(None)
    jax.config.update("jax_compilation_cache_dir", directory)
    if not environ.get(JAX_MIN_TIME_ENV):
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    log = CacheLog(directory)
    jax.monitoring.register_event_listener(log.on_event)
    jax.monitoring.register_event_duration_secs_listener(log.on_duration)
    return log
