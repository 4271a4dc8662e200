"""Does a different weight-gradient formulation make XLA:CPU's training step faster?

Tried for issue 3 (CPU PPO throughput). The formulation: the ordinary convolution
forward with a custom VJP whose weight gradient is a sum of per-chunk gradients over
small batch chunks, unrolled in the one program (same values as lax's gradient, up to
float summation order). Prints JSON with two comparisons, each measured in one process:
* isolated: one 3x3 conv, only the weight gradient, lax vs chunked;
* network: IMPALA-CNN + PPO head, gradient of the PPO loss (the learner's real work),
  with flax's ``nn.Conv`` using lax's convolution vs the chunked one.

Finding (benchmarks/results/README.md): both are several times faster chunked, so the
library's convolutions use it on CPU. Both sides run through ``rldarts.model.conv``: the lax
side with ``MAX_CHUNKS = 1`` (one chunk = XLA's own gradient), the chunked side with
``CHUNK = --chunk`` and no cap on the number of chunks.

    .venv/bin/python -m benchmarks.archive.conv_formulations [--batch 512] [--chunk 16]
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rldarts.learn import ppo_losses
from rldarts.model import conv as conv_lib
from rldarts.model import networks


def use_chunks(chunk: int | None) -> None:
    """rldarts.model.conv settings, read when a function is traced: None = lax's gradient."""
    conv_lib.CHUNK, conv_lib.MAX_CHUNKS = (16, 1) if chunk is None else (chunk, 1 << 30)


def _time(fn, *args, repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return out, compile_s, (time.perf_counter() - t0) / repeats


def isolated(batch, chunk, repeats):
    rows = []
    dn = ("NHWC", "HWIO", "NHWC")
    for h, ci, co in ((64, 3, 16), (32, 16, 16), (32, 16, 32), (16, 32, 32), (8, 32, 32)):
        r = np.random.RandomState(0)
        x = jnp.asarray(r.randn(batch, h, h, ci), jnp.float32)
        w = jnp.asarray(r.randn(3, 3, ci, co) * 0.1, jnp.float32)
        dy = jnp.asarray(r.randn(batch, h, h, co), jnp.float32)
        row = {"conv": f"{h}x{h}x{ci}->{co}"}
        _, _, row["fwd_ms"] = _time(
            jax.jit(
                lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)
            ),
            x,
            w,
            repeats=repeats,
        )
        for name, chunks in (("lax", None), ("chunked", chunk)):
            use_chunks(chunks)
            f = jax.jit(
                lambda x, w, dy: jax.vjp(
                    lambda w: conv_lib.conv_general_dilated(
                        x, w, (1, 1), "SAME", dimension_numbers=dn
                    ),
                    w,
                )[1](dy)[0]
            )
            _, _, row[f"weight_grad_{name}_ms"] = _time(f, x, w, dy, repeats=repeats)
        rows.append({k: round(v * 1000, 1) if k.endswith("_ms") else v for k, v in row.items()})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def network(batch, chunk, repeats):
    r = np.random.default_rng(0)
    b = {
        "obs": jnp.asarray(r.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)),
        "actions": jnp.asarray(r.integers(0, 15, batch), jnp.int32),
        "log_probs": jnp.full(batch, -2.7),
        "values": jnp.zeros(batch),
        "advantages": jnp.asarray(r.normal(size=batch), jnp.float32),
        "returns": jnp.ones(batch),
    }
    out, grads = {"network": "impala", "batch": batch}, []
    for name, chunks in (("lax", None), ("chunked", chunk)):
        use_chunks(chunks)  # a fresh model and loss per setting: traced anew
        model = networks.Agent(networks.make_torso("impala"), networks.PolicyValueHead(15))
        params = model.init(jax.random.PRNGKey(0), b["obs"][:2], {})

        def loss(p, model=model):
            logits, value = model.apply(p, b["obs"], {}, 1.0)
            return ppo_losses.ppo_loss(logits, value, b, 0.2, 0.5, 0.01)[0]

        g, compile_s, t = _time(jax.jit(jax.grad(loss)), params, repeats=repeats)
        grads.append(g)
        out[f"{name}_compile_s"] = round(compile_s, 1)
        out[f"{name}_fwd_bwd_samples_per_s"] = round(batch / t, 1)
        print(json.dumps(out), flush=True)
    out["max_rel_grad_diff"] = float(
        max(
            jnp.max(jnp.abs(a - c)) / (jnp.max(jnp.abs(c)) + 1e-12)
            for a, c in zip(jax.tree.leaves(grads[1]), jax.tree.leaves(grads[0]))
        )
    )
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    result = {
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "chunk": args.chunk,
        "isolated": isolated(args.batch, args.chunk, args.repeats),
        "network": network(args.batch, args.chunk, args.repeats),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
