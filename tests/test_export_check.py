"""Programs lower for TPU and GPU from this CPU machine (benchmarks/export_check.py), and
the CPU-only kernels stay in CPU programs."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from _binaries import ROOT
from jax import export

from benchmarks import export_check
from rldarts.model import conv, pooling


def test_export_check_passes_on_the_smoke_preset_for_tpu_and_cuda():
    cmd = [sys.executable, "-m", "benchmarks.export_check", "--preset=smoke"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    names = {"ppo:act", "ppo:ppo_update", "dqn:act", "dqn:dqn_step"}
    for platform in ("tpu", "cuda"):
        assert set(report["platforms"][platform]) == names
        assert all(r["lowered"] for r in report["platforms"][platform].values())
    assert report["failed"] == []


def test_a_host_callback_fails_the_check():
    fn = jax.jit(lambda x: jax.pure_callback(np.sin, jax.ShapeDtypeStruct((4,), jnp.float32), x))
    result = export_check.lower(fn, (jax.ShapeDtypeStruct((4,), jnp.float32),), "cuda")
    assert not result["lowered"], result


def _count_convolutions(platform: str) -> int:
    x, w = jnp.ones((64, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
    dn = ("NHWC", "HWIO", "NHWC")
    loss = lambda x, w: jnp.sum(conv.conv_general_dilated(x, w, (1, 1), "SAME", None, None, dn))
    grad = jax.jit(jax.grad(loss, argnums=1))
    return export.export(grad, platforms=[platform])(x, w).mlir_module().count("convolution(")


def test_the_chunked_conv_gradient_is_only_in_cpu_programs():
    """64 samples = 4 chunks of 16 on CPU: one weight-gradient conv per chunk there; an
    accelerator's program has one weight gradient."""
    accelerators = max(_count_convolutions("cuda"), _count_convolutions("tpu"))
    assert accelerators <= 2
    assert _count_convolutions("cpu") >= accelerators + len(conv.chunk_bounds(64)) - 1


def test_the_pool_barrier_is_only_in_cpu_programs():
    x = jnp.ones((4, 8, 8, 2))
    grad = jax.jit(jax.grad(lambda x: jnp.sum(pooling.max_pool(x, 3, 2))))
    # The CPU program keeps the data-dependent conditional of _materialized.
    cases = lambda p: export.export(grad, platforms=[p])(x).mlir_module().count("stablehlo.case")
    assert cases("cpu") > cases("cuda") and cases("cuda") == cases("tpu")
