"""Max and average pooling with CPU-friendly gradients (drop-ins for ``nn.max_pool`` and
``nn.avg_pool(count_include_pad=False)`` with 'SAME' padding).

A back-end seam like ``rldarts.model.conv``: a reader of the paper can skip this module. The
ops of ``rldarts.model.ops`` pool through ``max_pool`` / ``avg_pool`` (and ``ops`` re-exports
them); what a pool computes is the textbook one, only how XLA computes it differs.

Why: XLA:CPU (jax 0.10) runs ``reduce_window`` and its gradient, and the max pool's
select-and-scatter gradient, slowly: in the IMPALA-CNN and ``cpu_demo`` supernet PPO
steps the pools were a large share of the gradient time. So both pools are sums / maxes
of the ``size**2`` shifted strided views of the padded input, with custom VJPs that add
the gradient into the ``stride**2`` phase grids of the input (``_scatter_views``); on
CPU the max pool's forward runs where XLA cannot fuse its recomputation into the backward
(``_materialized``). Values and gradients are those of ``nn.max_pool`` (first maximum of
each window in row-major order, as select-and-scatter and PyTorch) and ``nn.avg_pool``
(average over the real pixels only); tests compare them with Flax and NumPy. Profiles
and measured speedups: benchmarks/results/README.md and benchmarks/archive/pool_formulations.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def max_pool(x: jax.Array, size: int = 3, stride: int = 2) -> jax.Array:
    """Max pool with 'SAME' padding: same values and gradient as ``nn.max_pool``.

    Forward: a max over the ``size**2`` shifted strided views, recording which view won
    (int8). Backward (custom VJP): the gradient goes to the first maximum of each window
    in row-major order, as XLA's select-and-scatter and PyTorch give it, placed by
    ``_scatter_views``. Why not autodiff: XLA:CPU's select-and-scatter is slow, and the
    autodiff of the max over views pads every view's gradient with interior padding.
    With ``_materialized`` the IMPALA-CNN PPO step runs faster on CPU than with that
    autodiff (figures: benchmarks/results/README.md, benchmarks/archive/pool_formulations.py).
    """
    shape = x.shape

    @jax.custom_vjp
    def pool(x):
        return _max_pool_fwd(x, size, stride)[0]

    def bwd(winner, g):
        return (_scatter_views(shape, size, stride, lambda k: jnp.where(winner == k, g, 0)),)

    pool.defvjp(
        lambda x: _materialized(functools.partial(_max_pool_fwd, size=size, stride=stride), x), bwd
    )
    return pool(x)


def _materialized(fn, x: jax.Array):
    """``fn(x)`` computed where XLA:CPU cannot fuse it into its consumers.

    Why: XLA fuses cheap elementwise producers into each consumer and recomputes them
    there. The max pool's backward interleaves its phase grids in one fusion that read
    the forward's maximum and winner index ~2.25 times per input pixel, each time
    recomputed from the 9 views: a large share of the IMPALA-CNN gradient on CPU.
    ``lax.optimization_barrier`` does not stop it (jax 0.10); a conditional does, as its
    branches compile apart and its results are buffers: the gradient then runs faster
    (benchmarks/results/README.md). The predicate has to be data, or XLA
    folds the conditional: a NaN first element gives all-NaN outputs, which keeps a NaN
    input reaching the loss. Accelerators skip it (a conditional costs them a sync).
    """
    shapes = jax.eval_shape(fn, x)

    def poisoned(x):
        return jax.tree.map(
            lambda s: (
                jnp.full(s.shape, jnp.nan, s.dtype)
                if jnp.issubdtype(s.dtype, jnp.floating)
                else jnp.zeros(s.shape, s.dtype)
            ),
            shapes,
        )

    def on_cpu(x):
        return jax.lax.cond(jnp.isnan(x.reshape(-1)[0]), poisoned, fn, x)

    # Chosen per platform when the program is lowered (also for programs exported from
    # a CPU machine to an accelerator).
    return jax.lax.platform_dependent(x, cpu=on_cpu, default=fn)


def avg_pool(x: jax.Array, size: int = 3, stride: int = 1) -> jax.Array:
    """Average pool with 'SAME' padding that averages only real pixels (DARTS's
    ``count_include_pad=False``): same values and gradient as ``nn.avg_pool`` with it.

    A sum of the shifted strided views times a constant 1/count; the custom VJP places
    the gradient with ``_scatter_views``. Why: XLA:CPU runs ``reduce_window`` and its
    gradient slowly (~40% of the cpu_demo supernet's gradient time was average pools:
    the strided parameter-free ops of every reduction edge).
    """
    shape = x.shape
    inv_count = _inverse_window_counts(shape[1], shape[2], size, stride)

    def forward(x):
        return sum(_pool_views(x, size, stride, 0.0)) * inv_count.astype(x.dtype)

    def bwd(_, g):
        share = g * inv_count.astype(g.dtype)
        return (_scatter_views(shape, size, stride, lambda k: share),)

    pool = jax.custom_vjp(forward)
    pool.defvjp(lambda x: (forward(x), None), bwd)
    return pool(x)


def _pool_geometry(n: int, size: int, stride: int):
    """(outputs, 'SAME' pad before, pad after up to whole phase grids, grid length)."""
    out = -(-n // stride)
    pad = max((out - 1) * stride + size - n, 0)
    grid = out - 1 + -(-size // stride)
    return out, pad // 2, grid * stride - n - pad // 2, grid


def _inverse_window_counts(h: int, w: int, size: int, stride: int) -> np.ndarray:
    """1 / (real pixels under each 'SAME' window), shape (out_h, out_w, 1)."""

    def counts(n):
        out, top, _, _ = _pool_geometry(n, size, stride)
        starts = np.arange(out) * stride - top
        return np.minimum(starts + size, n) - np.maximum(starts, 0)

    return (1.0 / np.outer(counts(h), counts(w)))[:, :, None].astype(np.float32)


def _pool_views(x: jax.Array, size: int, stride: int, pad_value: float) -> list[jax.Array]:
    """The ``size**2`` strided views of the padded input whose max / sum is the pool;
    view ``k = i * size + j`` starts at row ``i``, column ``j`` of the padded input."""
    b, h, w, c = x.shape
    (oh, top, bottom, _), (ow, left, right, _) = (_pool_geometry(n, size, stride) for n in (h, w))
    xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=pad_value)
    return [
        jax.lax.slice(
            xp,
            (0, i, j, 0),
            (b, i + (oh - 1) * stride + 1, j + (ow - 1) * stride + 1, c),
            (1, stride, stride, 1),
        )
        for i in range(size)
        for j in range(size)
    ]


def _max_pool_fwd(x, size: int, stride: int):
    views = _pool_views(x, size, stride, -jnp.inf)
    index_dtype = jnp.int8 if len(views) < 128 else jnp.int32
    out, winner = views[0], jnp.zeros(views[0].shape, index_dtype)
    for k, view in enumerate(views[1:], start=1):
        winner = jnp.where(view > out, jnp.asarray(k, index_dtype), winner)  # first max
        out = jnp.maximum(out, view)
    return out, winner


def _scatter_views(shape, size: int, stride: int, share: Callable[[int], jax.Array]):
    """The adjoint of ``_pool_views``: the input-shaped sum of ``share(k)`` (output-shaped)
    added where view ``k`` reads. Each view reads one *phase grid* (the input pixels with
    the same row/column remainder mod ``stride``) at a plain shift, so every share is
    padded once, without interior padding, and the ``stride**2`` grids are interleaved
    at the end."""
    b, h, w, c = shape
    (oh, top, _, gh), (ow, left, _, gw) = (_pool_geometry(n, size, stride) for n in (h, w))
    phases = {}
    for i in range(size):
        for j in range(size):
            di, dj = i // stride, j // stride  # view (i, j)'s shift inside its phase grid
            part = jnp.pad(
                share(i * size + j), ((0, 0), (di, gh - oh - di), (dj, gw - ow - dj), (0, 0))
            )
            key = (i % stride, j % stride)
            phases[key] = part if key not in phases else phases[key] + part
    zero = jnp.zeros((b, gh, gw, c), phases[0, 0].dtype)
    grid = jnp.stack(
        [
            jnp.stack([phases.get((p, q), zero) for q in range(stride)], axis=3)
            for p in range(stride)
        ],
        axis=2,
    )  # (b, gh, stride, gw, stride, c)
    padded = grid.reshape(b, gh * stride, gw * stride, c)
    return padded[:, top : top + h, left : left + w, :]
