"""IMPALA-CNN forward and forward+backward in plain JAX (no Flax/optax), to compare
jaxlib versions on the same machine: run it with each version's interpreter.

Tried for issue 3 (is a newer or older XLA:CPU faster at the conv backward pass?).
Needs only jax + numpy, so it runs in a scratch venv holding any jax/jaxlib version:

    python3.11 -m venv /tmp/venv_jax0430
    /tmp/venv_jax0430/bin/pip install jax==0.4.30 jaxlib==0.4.30 "numpy<2" "ml_dtypes<0.5"
    /tmp/venv_jax0430/bin/python benchmarks/archive/jax_versions.py --batch 512

``--chunked`` routes the convolutions through ``rldarts.model.conv`` (the library's chunked
weight gradient; needs flax in that venv and the repository on PYTHONPATH).
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

DN = ("NHWC", "HWIO", "NHWC")


def init(key, depths=(16, 32, 32), dense=256, actions=15):
    params, cin = [], 3
    for d in depths:
        key, *ks = jax.random.split(key, 6)
        convs = [
            jax.random.normal(k, (3, 3, c, d)) * (2 / (9 * c)) ** 0.5
            for k, c in zip(ks, (cin, d, d, d, d))
        ]
        params.append([(w, jnp.zeros(d)) for w in convs])
        cin = d
    key, k1, k2 = jax.random.split(key, 3)
    flat = 8 * 8 * depths[-1]
    head = (
        jax.random.normal(k1, (flat, dense)) / flat**0.5,
        jnp.zeros(dense),
        jax.random.normal(k2, (dense, actions + 1)) / dense**0.5,
        jnp.zeros(actions + 1),
    )
    return params, head


CONV = lax.conv_general_dilated  # --chunked: rldarts.model.conv.conv_general_dilated


def conv(x, wb):
    return CONV(x, wb[0], (1, 1), "SAME", dimension_numbers=DN) + wb[1]


def max_pool(x):  # 3x3 stride 2 SAME, as a max over shifted strided views (rldarts.model.ops)
    b, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=-jnp.inf)
    out = None
    for i in range(3):
        for j in range(3):
            v = lax.slice(xp, (0, i, j, 0), (b, i + h - 1, j + w - 1, c), (1, 2, 2, 1))
            out = v if out is None else jnp.maximum(out, v)
    return out


def forward(params, obs):
    convs, (w1, b1, w2, b2) = params
    x = obs.astype(jnp.float32) / 255.0
    for stage in convs:
        x = max_pool(conv(x, stage[0]))
        for r in (1, 3):
            y = conv(jax.nn.relu(x), stage[r])
            x = x + conv(jax.nn.relu(y), stage[r + 1])
    x = jax.nn.relu(jax.nn.relu(x.reshape(x.shape[0], -1)) @ w1 + b1)
    return x @ w2 + b2


def loss(params, obs, actions):
    out = forward(params, obs)
    logp = jax.nn.log_softmax(out[:, :-1])
    return -jnp.mean(jnp.take_along_axis(logp, actions[:, None], 1)) + jnp.mean(out[:, -1] ** 2)


def timed(fn, *args, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return compile_s, (time.perf_counter() - t0) / repeats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunked", action="store_true")
    args = ap.parse_args()
    if args.chunked:
        global CONV
        from rldarts.model import conv as conv_lib

        CONV = conv_lib.conv_general_dilated
    r = np.random.RandomState(0)
    obs = jnp.asarray(r.randint(0, 256, (args.batch, 64, 64, 3)), jnp.uint8)
    actions = jnp.asarray(r.randint(0, 15, args.batch), jnp.int32)
    params = init(jax.random.PRNGKey(0))
    fc, ft = timed(jax.jit(forward), params, obs, repeats=args.repeats)
    gc, gt = timed(jax.jit(jax.grad(loss)), params, obs, actions, repeats=args.repeats)
    print(
        json.dumps(
            {
                "jax": jax.__version__,
                "batch": args.batch,
                "chunked": args.chunked,
                "fwd_samples_per_s": round(args.batch / ft, 1),
                "fwd_bwd_samples_per_s": round(args.batch / gt, 1),
                "compile_fwd_s": round(fc, 1),
                "compile_fwd_bwd_s": round(gc, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
