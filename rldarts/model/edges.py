"""What runs on one supernet edge: the weighted mixture of candidate ops (``MixedOp``,
optionally on 1/K of the channels as PC-DARTS), the one drawn op of GDAS (``SampledOp``)
and the Gumbel draw behind it. ``rldarts.model.methods`` decides which one an edge uses.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rldarts.model import ops as ops_lib


def gumbel_hard_weights(
    alphas: jax.Array, gumbel: jax.Array, inverse_temperature=1.0
) -> tuple[jax.Array, jax.Array]:
    """GDAS draw for edges ``alphas`` ``(edges, ops)`` with Gumbel(0, 1) noise ``gumbel``
    of the same shape: ``(index, weights)``, the drawn op per edge (a sample of
    softmax(alphas)) and a one-hot ``weights`` whose gradient is that of the soft sample
    softmax(inverse_temperature * (log_softmax(alphas) + gumbel)) (straight-through)."""
    logits = jax.nn.log_softmax(alphas, axis=-1) + gumbel
    soft = jax.nn.softmax(inverse_temperature * logits, axis=-1)
    index = jnp.argmax(logits, axis=-1)
    hard = jax.nn.one_hot(index, alphas.shape[-1], dtype=soft.dtype)
    return index, hard + (soft - jax.lax.stop_gradient(soft))


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """NHWC channel shuffle (ShuffleNet; PC-DARTS): channel g * (C / groups) + i moves to
    i * groups + g, so the mixed part of an edge is spread over every group."""
    n, h, w, c = x.shape
    return x.reshape(n, h, w, groups, c // groups).swapaxes(-1, -2).reshape(n, h, w, c)


class MixedOp(nn.Module):
    """sum_k w_k op_k(x) over the candidate ops; a single op when ``weights`` is None.

    Zero ops are skipped: their output is 0, computing it would only cost time.
    With ``partial_channels_k`` K > 1 (PC-DARTS) the mixture runs on the first C/K
    channels only; the other channels bypass it (2x2 max pool on strided edges, as
    PC-DARTS) and a channel shuffle interleaves the two parts.
    """

    channels: int
    ops: tuple[str, ...]
    stride: int = 1
    partial_channels_k: int = 1

    @nn.compact
    def __call__(self, x, weights=None):
        k = self.partial_channels_k
        if k == 1:
            return self._mixture(x, self.channels, weights)
        check_partial_channels(self.channels, k)
        part = self.channels // k
        mixed = self._mixture(x[..., :part], part, weights)
        bypass = x[..., part:]
        if self.stride > 1:
            bypass = ops_lib.max_pool(bypass, 2, self.stride)
        return channel_shuffle(jnp.concatenate([mixed, bypass], axis=-1), k)

    def _mixture(self, x, channels: int, weights):
        out = 0.0
        for k, name in enumerate(self.ops):
            if name in ops_lib.ZERO_OPS:
                continue
            y = ops_lib.make_op(name, channels, self.stride, name=name)(x)
            out = out + (y if weights is None else weights[k] * y)
        if isinstance(out, float):  # only zero ops: keep the strided shape
            out = ops_lib.Zero(channels, self.stride)(x)
        return out


def check_partial_channels(channels: int, k: int) -> None:
    """PC-DARTS splits an edge's channels in K groups: K must divide the width."""
    if k <= 0 or channels % k:
        raise ValueError(
            f"arch.partial_channels_k={k} must be a positive divisor of "
            f"every cell width; got width {channels}"
        )


class SampledOp(nn.Module):
    """GDAS edge: ``weight * op_index(x)``, where only the op at ``index`` runs (a
    ``lax.switch``; at init every op runs once so that all parameters exist). The
    parameters are named as ``MixedOp``'s (``<op name>/...``)."""

    channels: int
    ops: tuple[str, ...]
    stride: int = 1

    def setup(self):
        for name in self.ops:  # setattr names the submodule: params under <op name>/
            setattr(self, name, ops_lib.make_op(name, self.channels, self.stride))

    def __call__(self, x, index, weights):
        branches = [lambda mdl, x, name=name: getattr(mdl, name)(x) for name in self.ops]
        if self.is_initializing():
            for branch in branches:
                branch(self, x)
        return weights[index] * nn.switch(index, branches, self, x)
