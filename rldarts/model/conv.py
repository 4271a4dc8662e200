"""Convolution with a CPU-friendly weight gradient (a drop-in for ``lax.conv_general_dilated``).

Why: for some programs XLA:CPU (jax 0.10) picks a slow algorithm for the filter gradient
of a convolution, many times slower than its forward pass. The same gradient computed as
a sum of per-chunk gradients over small batch chunks, unrolled in the one program, is
fast in every program measured: each chunk's contraction stays in cache and independent
chunks can run on different cores (figures: benchmarks/results/README.md, issue 3).

So ``conv_general_dilated`` here is the ordinary convolution forward, with a custom VJP
whose input gradient is the ordinary one and whose weight gradient is that chunked sum:
it changes how the weight gradient is computed (float summation order), never what it is
(tests compare it with ``lax``'s gradient and with NumPy). It applies on the CPU backend
only; accelerators get the plain ``lax`` gradient. ``CHUNK`` and ``MAX_CHUNKS`` trade run
time against compile time (each chunk is one more convolution in the compiled program).

Flax modules use it through ``Conv`` (``nn.Conv`` with this function plugged in, same
parameter names, so checkpoints are unchanged).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
from jax import lax

# Samples per weight-gradient chunk, and the most chunks per convolution (beyond it the
# chunks grow instead: compile time grows with the number of chunks).
CHUNK = 16
MAX_CHUNKS = 32


def chunk_bounds(batch: int, chunk: int | None = None, max_chunks: int | None = None):
    """Static (start, stop) slices covering ``range(batch)`` in near-equal chunks
    (defaults: the module's ``CHUNK`` and ``MAX_CHUNKS``, read at trace time)."""
    chunk, max_chunks = chunk or CHUNK, max_chunks or MAX_CHUNKS
    num = max(1, min(max_chunks, -(-batch // chunk)))
    edges = [round(i * batch / num) for i in range(num + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
):
    """``lax.conv_general_dilated`` whose weight gradient is summed over batch chunks."""
    conv = functools.partial(
        lax.conv_general_dilated,
        window_strides=window_strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if batch_group_count != 1:
        return conv(lhs, rhs)
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    lhs_batch, out_batch = dn.lhs_spec[0], dn.out_spec[0]
    bounds = chunk_bounds(lhs.shape[lhs_batch])
    if len(bounds) == 1:
        return conv(lhs, rhs)

    @jax.custom_vjp
    def chunked(lhs, rhs):
        return conv(lhs, rhs)

    def fwd(lhs, rhs):
        return conv(lhs, rhs), (lhs, rhs)

    def bwd(residuals, g):
        lhs, rhs = residuals
        d_lhs = jax.vjp(lambda x: conv(x, rhs), lhs)[1](g)[0]
        d_rhs = None
        for a, b in bounds:
            lhs_c = lax.slice_in_dim(lhs, a, b, axis=lhs_batch)
            g_c = lax.slice_in_dim(g, a, b, axis=out_batch)
            part = jax.vjp(lambda w: conv(lhs_c, w), rhs)[1](g_c)[0]
            d_rhs = part if d_rhs is None else d_rhs + part
        return d_lhs, d_rhs

    chunked.defvjp(fwd, bwd)
    # Chosen per platform when the program is lowered: CPU programs get the chunks, GPU
    # and TPU programs (also those exported from a CPU machine) the plain conv.
    return lax.platform_dependent(lhs, rhs, cpu=chunked, default=conv)


# nn.Conv with the chunked weight gradient; same fields and parameter names as nn.Conv.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
