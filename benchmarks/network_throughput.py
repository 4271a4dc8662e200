"""Compile time and throughput of the torsos (+ PPO head): forward and forward+backward.

Prints JSON: per network, compile seconds of the fwd+bwd program and samples/s at the
given batch; plus a 3x3-conv breakdown (forward, input gradient, weight gradient) that
shows where XLA:CPU spends the backward pass.

    .venv/bin/python -m benchmarks.network_throughput [--batch 64] [--repeats 3]
"""

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from rldarts.model import networks


def _time(fn, *args, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return compile_s, (time.perf_counter() - t0) / repeats


def bench_network(name, torso, alphas, batch, repeats):
    model = networks.Agent(torso, networks.PolicyValueHead(15))
    obs = jnp.asarray(np.random.RandomState(0).randint(0, 256, (batch, 64, 64, 3)), jnp.uint8)
    params = model.init(jax.random.PRNGKey(0), obs, alphas)

    def loss(p, a):
        logits, value = model.apply(p, obs, a)
        return jnp.sum(logits**2) + jnp.sum(value**2)

    fwd = jax.jit(lambda p, a: model.apply(p, obs, a))
    fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 1)))
    fwd_compile, fwd_s = _time(fwd, params, alphas, repeats=repeats)
    fb_compile, fb_s = _time(fwd_bwd, params, alphas, repeats=repeats)
    return {
        "network": name,
        "batch": batch,
        "params": int(sum(x.size for x in jax.tree.leaves(params))),
        "compile_fwd_s": round(fwd_compile, 2),
        "compile_fwd_bwd_s": round(fb_compile, 2),
        "fwd_samples_per_s": round(batch / fwd_s, 1),
        "fwd_bwd_samples_per_s": round(batch / fb_s, 1),
    }


def conv_breakdown(batch, repeats):
    conv = lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    out = []
    for h, c in ((64, 16), (32, 16), (16, 32)):
        x = jnp.asarray(np.random.RandomState(0).randn(batch, h, h, c), jnp.float32)
        w = jnp.asarray(np.random.RandomState(1).randn(3, 3, c, c) * 0.1, jnp.float32)
        y = conv(x, w)
        row = {"shape": f"{batch}x{h}x{h}x{c} 3x3 -> {c}"}
        for part, fn in (
            ("fwd_ms", jax.jit(conv)),
            ("input_grad_ms", jax.jit(lambda x, w, y: jax.vjp(conv, x, w)[1](y)[0])),
            ("weight_grad_ms", jax.jit(lambda x, w, y: jax.vjp(conv, x, w)[1](y)[1])),
        ):
            args = (x, w) if part == "fwd_ms" else (x, w, y)
            row[part] = round(1000 * _time(fn, *args, repeats=repeats)[1], 2)
        out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    results = {
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "machine": platform.processor() or platform.machine(),
        "networks": [],
    }
    cases = [
        ("impala", networks.make_torso("impala"), {}),
        (
            "darts_standard_supernet_rl_darts_conv",
            networks.make_torso("darts_standard", search_space="rl_darts_conv"),
            networks.init_network_alphas("darts_standard", "rl_darts_conv", 4),
        ),
        (
            "cpu_demo_supernet",
            networks.make_torso(
                "darts_standard",
                depths=(8, 16),
                dense=64,
                num_nodes=2,
                search_space="rl_darts_default",
                first_conv=False,
            ),
            networks.init_network_alphas("darts_standard", "rl_darts_default", 2),
        ),
    ]
    for name, torso, alphas in cases:
        results["networks"].append(bench_network(name, torso, alphas, args.batch, args.repeats))
        print(json.dumps(results["networks"][-1]), flush=True)
    results["conv_breakdown"] = conv_breakdown(args.batch, args.repeats)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
