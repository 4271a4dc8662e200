"""IMPALA-CNN layer by layer on XLA:CPU: each 3x3 convolution's forward, input gradient
and weight gradient, and each max pool's forward and forward+backward, in milliseconds
at one batch size. `benchmarks/archive/torch_reference.py --layers` prints the same table for
PyTorch, so the two show which layers make the gap (benchmarks/results/README.md).

The convolutions go through ``rldarts.model.conv`` as the networks use them (chunked weight
gradient on CPU; ``--conv-max-chunks 1`` for XLA's own).

    .venv/bin/python -m benchmarks.archive.conv_layers [--batch 256]
"""

import argparse
import json
import time

import jax

from rldarts.model import conv as conv_lib
from rldarts.model.ops import max_pool

# (spatial size, in channels, out channels, how many such convs in IMPALA-CNN)
CONV_LAYERS = ((64, 3, 16, 1), (32, 16, 16, 4), (32, 16, 32, 1), (16, 32, 32, 5), (8, 32, 32, 4))
# (spatial size before pooling, channels)
POOL_LAYERS = ((64, 16), (32, 32), (16, 32))


def timed_ms(fn, *args, repeats):
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return round(1000 * (time.perf_counter() - t0) / repeats, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--conv-max-chunks", type=int, default=conv_lib.MAX_CHUNKS)
    args = ap.parse_args()
    conv_lib.MAX_CHUNKS = args.conv_max_chunks
    b, key, out = args.batch, jax.random.PRNGKey(0), {}

    def conv(x, w):
        return conv_lib.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    total = 0.0
    for hw, cin, cout, count in CONV_LAYERS:
        x = jax.random.normal(key, (b, hw, hw, cin))
        w = jax.random.normal(key, (3, 3, cin, cout))
        g = jax.random.normal(key, (b, hw, hw, cout))
        row = {
            "fwd": timed_ms(conv, x, w, repeats=args.repeats),
            "dx": timed_ms(
                lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0],
                x,
                w,
                g,
                repeats=args.repeats,
            ),
            "dw": timed_ms(
                lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0],
                x,
                w,
                g,
                repeats=args.repeats,
            ),
            "count": count,
        }
        # The first conv's input is the observation: no input gradient in training.
        total += count * (row["fwd"] + row["dw"] + (row["dx"] if cin != 3 else 0.0))
        out[f"conv {hw}x{hw} {cin}->{cout}"] = row
    for hw, c in POOL_LAYERS:
        x = jax.random.normal(key, (b, hw, hw, c))
        row = {
            "fwd": timed_ms(max_pool, x, repeats=args.repeats),
            "fwd_bwd": timed_ms(jax.grad(lambda x: max_pool(x).sum()), x, repeats=args.repeats),
        }
        total += row["fwd_bwd"]
        out[f"pool {hw}x{hw} {c}"] = row
    print(
        json.dumps(
            {
                "jax": jax.__version__,
                "batch": b,
                "conv_max_chunks": conv_lib.MAX_CHUNKS,
                "layers_ms": out,
                "training_pass_ms": round(total, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
