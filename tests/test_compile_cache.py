"""The persistent compilation cache (rldarts/run/compile_cache.py): where it lives, that a
second identical run is answered from it, that ``off`` writes nothing, and that a bad
directory stops the binary in one line. Every process here gets its own cache directory
and a temporary XDG_CACHE_HOME / HOME, so the user's cache is never touched."""

import json
import os
import subprocess
import sys

import pytest

from rldarts.run import compile_cache
from tests._binaries import ROOT, SEARCH

# A tiny "run": the binaries' one call, then two small jitted programs.
PROGRAM = """
import dataclasses, json
import jax, jax.numpy as jnp
from rldarts.run import compile_cache
log = compile_cache.enable()
x = jnp.arange(8.0)
jax.jit(lambda v: jnp.sin(v) * 2 + v.sum())(x).block_until_ready()
jax.jit(lambda v: jnp.cumsum(v) @ v)(x).block_until_ready()
print(log.summary())
print(json.dumps(dataclasses.asdict(log)))
"""


def _env(tmp_path, **values):
    """The test process's environment without any cache setting of the caller's (the
    test session sets some in conftest.py), a private home, and `values`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (compile_cache.ENV, compile_cache.JAX_DIR_ENV, compile_cache.JAX_MIN_TIME_ENV)
    }
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(values)
    return env


def _run_program(env):
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    return lines[-2], json.loads(lines[-1]), proc.stderr


def _files(path):
    return sorted(f for _, _, files in os.walk(path) for f in files) if path.exists() else []


def test_default_dir_follows_xdg_cache_home():
    assert compile_cache.default_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == "/c/rldarts/jax"
    # unset, empty or relative (ignored by the XDG spec): ~/.cache
    for xdg in ({}, {"XDG_CACHE_HOME": ""}, {"XDG_CACHE_HOME": "rel"}):
        assert compile_cache.default_dir({**xdg, "HOME": "/h"}) == "/h/.cache/rldarts/jax"


def test_resolve_order_ours_then_jax_then_default():
    base = {"HOME": "/h", "XDG_CACHE_HOME": "/c"}
    jax_dir = {compile_cache.JAX_DIR_ENV: "/j"}
    assert compile_cache.resolve(base) == ("/c/rldarts/jax", "default")
    assert compile_cache.resolve({**base, **jax_dir}) == ("/j", compile_cache.JAX_DIR_ENV)
    ours = {**base, **jax_dir, compile_cache.ENV: "/r"}
    assert compile_cache.resolve(ours) == ("/r", compile_cache.ENV)
    off = {**base, **jax_dir, compile_cache.ENV: "OFF"}
    assert compile_cache.resolve(off)[0] is None


def test_check_dir_refuses_a_file_in_one_line(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("")
    with pytest.raises(ValueError, match="is not a directory") as e:
        compile_cache.check_dir(str(path), compile_cache.ENV)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    compile_cache.check_dir(str(tmp_path / "new" / "dir"), compile_cache.ENV)  # created
    assert (tmp_path / "new" / "dir").is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_check_dir_refuses_a_read_only_dir(tmp_path):
    path = tmp_path / "ro"
    path.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="is not writable"):
        compile_cache.check_dir(str(path), compile_cache.ENV)


def test_second_identical_run_hits_the_cache(tmp_path):
    cache = tmp_path / "cache"
    env = _env(tmp_path, **{compile_cache.ENV: str(cache)})
    line, first, _ = _run_program(env)
    assert first["directory"] == str(cache) and first["hits"] == 0
    assert first["written"] >= 2 and len(_files(cache)) == first["written"], line
    line, second, _ = _run_program(env)
    assert second["hits"] >= 2 and second["written"] == 0, line
    assert second["requests"] == first["requests"]  # the same programs, all from disk
    assert line.startswith(f"compilation cache: {second['hits']} hits, 0 misses")
    assert not _files(tmp_path / "xdg") and not _files(tmp_path / "home")


def test_off_writes_nothing_even_with_jax_variable_set(tmp_path):
    jax_dir = tmp_path / "jax_dir"
    values = {compile_cache.ENV: "off", compile_cache.JAX_DIR_ENV: str(jax_dir)}
    # JAX alone would write these tiny programs into jax_dir: off must stop it.
    values[compile_cache.JAX_MIN_TIME_ENV] = "0"
    env = _env(tmp_path, **values)
    line, log, _ = _run_program(env)
    assert log["directory"] is None and log["requests"] == 0, line
    assert line.startswith("compilation cache: off")
    assert not _files(jax_dir) and not _files(tmp_path / "xdg") and not _files(tmp_path / "home")


def test_default_dir_under_xdg_cache_home(tmp_path):
    line, log, _ = _run_program(_env(tmp_path))
    assert log["directory"] == str(tmp_path / "xdg" / "rldarts" / "jax"), line
    assert len(_files(tmp_path / "xdg" / "rldarts" / "jax")) == log["written"] >= 2


def test_unusable_default_dir_warns_and_runs_uncached(tmp_path):
    (tmp_path / "xdg_file").write_text("")
    env = _env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "xdg_file"))
    line, log, stderr = _run_program(env)
    assert log["directory"] is None, line
    assert "warning: compilation cache: cannot create default cache dir" in stderr


def test_binary_refuses_a_cache_path_that_is_a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("")
    env = _env(tmp_path, **{compile_cache.ENV: str(path)})
    cmd = [sys.executable, "-m", "experiments.search", SEARCH, f"--workdir={tmp_path / 'w'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: compilation cache: {compile_cache.ENV}={path} is not a directory; point "
        f"{compile_cache.ENV} at a directory, or set {compile_cache.ENV}=off"
    )
    assert not (tmp_path / "w").exists()  # stopped before anything was written
