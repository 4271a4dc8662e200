"""Memory planning (rldarts.run.memory) and rematerialisation (rldarts.model.remat):
remat makes the same update; XLA's plan read right; the start-up refusal of a learner
step that does not fit, in one line, with nothing written."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _binaries import ROOT

from experiments.configs import base
from rldarts.model import networks
from rldarts.run import memory, setup

MINATAR_TRAIN = "--config=experiments/configs/train.py:minatar_smoke"
MINATAR_SEARCH = "--config=experiments/configs/search.py:minatar_smoke"


@pytest.mark.parametrize("method", ["darts", "gdas", "pc_darts"])
def test_remat_makes_the_same_gradients(method):
    """The reference is the network without remat: recomputing in the backward pass
    must give the same loss and gradients (weights and alphas) to float tolerance."""
    obs = jax.random.randint(jax.random.PRNGKey(1), (8, 16, 16, 3), 0, 255).astype(jnp.uint8)
    found = {}
    for level in ("none", "cell", "edge"):
        torso = networks.make_torso(
            "darts_standard", depths=(4, 8), dense=16, num_nodes=2, method=method, remat=level
        )
        alphas = networks.init_network_alphas("darts_standard", torso.ops, 2, method=method)
        alphas = jax.tree.map(lambda a: a + jnp.sin(jnp.arange(a.size)).reshape(a.shape), alphas)
        rngs = {"params": jax.random.PRNGKey(0), "arch": jax.random.PRNGKey(2)}
        params = torso.init(rngs, obs, alphas)

        def loss(p, a, torso=torso):
            out = torso.apply(p, obs, a, 1.0, rngs={"arch": jax.random.PRNGKey(3)})
            return jnp.sum(out**2)

        found[level] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, alphas)
    value, grads = found["none"]
    assert float(value) > 0
    for level in ("cell", "edge"):
        assert np.isclose(float(found[level][0]), float(value), rtol=1e-6)
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(found[level][1])):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 * float(jnp.max(jnp.abs(a))))


def test_an_unknown_remat_level_is_refused():
    with pytest.raises(
        ValueError, match="net.remat='cells' is not a level; valid: none, cell, edge"
    ):
        networks.make_torso("darts_minatar", remat="cells")
    c = base.build("minatar_smoke")
    c.net.remat = "always"
    with pytest.raises(ValueError, match="valid choices: auto, none, cell, edge"):
        setup.build(c, require_supernet=False)


def test_peak_bytes_reads_arguments_outputs_and_temporaries():
    """Hand count: one float32 (1000,) argument and a (1000, 2) float32 output."""
    fn = jax.jit(lambda x: jnp.stack([x * 2.0, x + 1.0], axis=1))
    parts = memory.peak_bytes(fn, (jax.ShapeDtypeStruct((1000,), jnp.float32),))
    assert parts["argument_bytes"] == 4000 and parts["output_bytes"] == 8000
    assert parts["peak_bytes"] == 12000 + parts["temp_bytes"]


def test_auto_tries_every_level_of_a_darts_network_on_accelerators_only():
    assert setup.remat_levels("auto", darts=True, backend="gpu") == ("none", "cell", "edge")
    assert setup.remat_levels("auto", darts=True, backend="cpu") == ("none",)
    assert setup.remat_levels("auto", darts=False, backend="tpu") == ("none",)
    assert setup.remat_levels("edge", darts=True, backend="cpu") == ("edge",)


def _train(tmp_path, limit, *overrides):
    env = {**os.environ, memory.LIMIT_VARIABLE: limit}
    cmd = [sys.executable, "-m", "experiments.train", MINATAR_TRAIN]
    cmd += [f"--workdir={tmp_path / 'run'}", *overrides]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_a_learner_step_that_does_not_fit_is_refused_in_one_line_before_anything_is_written(
    tmp_path,
):
    proc = _train(tmp_path, "0.0001", "--config.network=darts_minatar")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 65, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: the ppo step needs about"), lines
    assert "with net.remat=none" in lines[0]  # auto on CPU: remat would not shrink it
    assert f"but {memory.LIMIT_VARIABLE} is 0.00 GiB" in lines[0]
    for way_out in ("parallel.learner_devices", "ppo.num_minibatches"):
        assert way_out in lines[0]
    edge = _train(tmp_path, "0.0001", "--config.network=darts_minatar", "--config.net.remat=edge")
    assert edge.returncode == 65 and "with net.remat=edge" in edge.stderr
    assert not (tmp_path / "run").exists()
    bad = _train(tmp_path, "lots")
    assert (
        bad.returncode == 65 and "RLDARTS_MEMORY_LIMIT_GIB='lots' is not a positive" in bad.stderr
    )


def test_the_planned_step_is_the_program_the_run_compiles(tmp_path):
    """The start-up check compiles the learner step from shapes only; with a fresh
    compilation cache, the run's own compile of its step (a supernet's: whole
    minibatches on every backend) is then a cache hit: the planned program is exactly
    the one that runs (same HLO)."""
    env = {**os.environ, "RLDARTS_COMPILATION_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "experiments.search", MINATAR_SEARCH]
    cmd += [f"--workdir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("compilation cache:"))
    hits = int(line.split(":")[1].split()[0])
    assert hits >= 1, line
