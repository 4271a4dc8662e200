"""Candidate operations of a DARTS cell edge, and the named search spaces.

Every op is a Flax module built from ``(channels, stride)`` that maps an NHWC
array ``(B, H, W, C)`` to ``(B, ceil(H/stride), ceil(W/stride), channels)``.
Inside a cell the input has already been projected to ``channels`` (see
``rldarts.model.cells``), so ops whose output width is tied to their input (the
depthwise convs, pools, activations, skip) require ``C == channels``.

Two families live here:
* the RL-DARTS ops, with the names of the official code (``Conv3x3``,
  ``DilConv5x5Relu``, ``Relu``, ``SkipConnection``, ``Zero``, ...). Strided
  parameter-free ops get a 3x3 average pool with that stride in front, as there;
* the classic DARTS ops (``sep_conv_3x3``, ..., ``none``) with their original
  definitions: ReLU-conv-BN, separable convs applied twice, a factorized reduce
  for a strided skip. Their BN is the same affine-free, batch-statistics norm
  the cells use, so every network stays stateless (no running averages).

Convolutions and pools run through the back-end seams ``rldarts.model.conv`` and
``rldarts.model.pooling`` (same values as Flax's, gradients that are fast on XLA:CPU).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from rldarts.model import conv as conv_lib

# The pool kernels (a back-end seam, like conv_lib), re-exported as ops.max_pool /
# ops.avg_pool; the ops look them up here, so rebinding these names swaps every pool.
from rldarts.model.pooling import avg_pool, max_pool


def batch_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Batch norm without learned scale/offset that always uses the current batch.

    This is the normalisation of the official RL-DARTS cells; using batch statistics
    at acting time too keeps the networks free of mutable state. The statistics are
    over the whole batch axis as the program sees it: under ``jax.jit`` with the batch
    sharded over devices XLA reduces across them, so a data-parallel learner still
    normalises over its whole minibatch (tests/test_batch_statistics.py); a per-device
    ``shard_map`` body would need explicit collectives. Whoever splits a batch changes
    the update (``rldarts.learn.ppo.microbatch_size``).
    """
    mean = jnp.mean(x, axis=(0, 1, 2), keepdims=True)
    var = jnp.var(x, axis=(0, 1, 2), keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def _pool(kind: str, x: jax.Array, size: int, stride: int) -> jax.Array:
    return max_pool(x, size, stride) if kind == "max" else avg_pool(x, size, stride)


def _check_width(name: str, x: jax.Array, channels: int) -> None:
    if x.shape[-1] != channels:
        raise ValueError(
            f"op {name} keeps the channel count: input has {x.shape[-1]} channels, "
            f"op was built for {channels} (project the input with a 1x1 conv first)"
        )


class Conv(nn.Module):
    """Plain (optionally dilated) convolution, optionally followed by ReLU."""

    channels: int
    stride: int = 1
    kernel: int = 3
    dilation: int = 1
    relu: bool = False

    @nn.compact
    def __call__(self, x):
        y = conv_lib.Conv(
            self.channels,
            (self.kernel, self.kernel),
            strides=self.stride,
            kernel_dilation=self.dilation,
            padding="SAME",
        )(x)
        return nn.relu(y) if self.relu else y


class DepthConv(nn.Module):
    """Depthwise convolution (one filter per channel), optionally + pointwise 1x1."""

    channels: int
    stride: int = 1
    kernel: int = 3
    separable: bool = False
    relu: bool = False

    @nn.compact
    def __call__(self, x):
        _check_width(type(self).__name__, x, self.channels)
        y = conv_lib.Conv(
            self.channels,
            (self.kernel, self.kernel),
            strides=self.stride,
            padding="SAME",
            feature_group_count=self.channels,
        )(x)
        if self.separable:
            y = conv_lib.Conv(self.channels, (1, 1))(y)
        return nn.relu(y) if self.relu else y


class ParameterFree(nn.Module):
    """An elementwise function; strided: a 3x3 average pool with that stride first."""

    channels: int
    stride: int = 1
    fn: Callable[[jax.Array], jax.Array] = lambda x: x

    @nn.compact
    def __call__(self, x):
        _check_width("parameter-free op", x, self.channels)
        if self.stride > 1:
            x = _pool("avg", x, 3, self.stride)
        return self.fn(x)


class Pool(nn.Module):
    """Max or average pooling; the pool itself carries the stride."""

    channels: int
    stride: int = 1
    kind: str = "max"
    size: int = 3
    normalize: bool = False  # classic DARTS follows a pool by BN

    @nn.compact
    def __call__(self, x):
        _check_width("pool", x, self.channels)
        y = _pool(self.kind, x, self.size, self.stride)
        return batch_norm(y) if self.normalize else y


class Zero(nn.Module):
    """The 'no edge' op: zeros of the strided shape."""

    channels: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        return jnp.zeros_like(x[:, :: self.stride, :: self.stride, : self.channels])


class ReLUConvBN(nn.Module):
    """Classic DARTS: ReLU -> (dilated) depthwise kxk -> pointwise 1x1 -> BN.

    With ``dilation=2`` this is ``dil_conv``; ``SepConv`` applies it twice.
    """

    channels: int
    stride: int = 1
    kernel: int = 3
    dilation: int = 1

    @nn.compact
    def __call__(self, x):
        y = nn.relu(x)
        y = conv_lib.Conv(
            x.shape[-1],
            (self.kernel, self.kernel),
            strides=self.stride,
            kernel_dilation=self.dilation,
            padding="SAME",
            feature_group_count=x.shape[-1],
            use_bias=False,
        )(y)
        y = conv_lib.Conv(self.channels, (1, 1), use_bias=False)(y)
        return batch_norm(y)


class SepConv(nn.Module):
    """Classic DARTS separable conv: the ReLU-dw-pw-BN block applied twice."""

    channels: int
    stride: int = 1
    kernel: int = 3

    @nn.compact
    def __call__(self, x):
        y = ReLUConvBN(x.shape[-1], self.stride, self.kernel)(x)
        return ReLUConvBN(self.channels, 1, self.kernel)(y)


class FactorizedReduce(nn.Module):
    """Classic DARTS strided skip: two offset 1x1 stride-2 convs, concatenated, BN."""

    channels: int
    stride: int = 2

    @nn.compact
    def __call__(self, x):
        y = nn.relu(x)
        half = self.channels // 2
        a = conv_lib.Conv(half, (1, 1), strides=2, use_bias=False)(y)
        # The second path looks at the pixels the first one skips.
        shifted = jnp.pad(y[:, 1:, 1:, :], ((0, 0), (0, 1), (0, 1), (0, 0)))
        b = conv_lib.Conv(self.channels - half, (1, 1), strides=2, use_bias=False)(shifted)
        return batch_norm(jnp.concatenate([a, b], axis=-1))


def _classic_skip(channels: int, stride: int) -> nn.Module:
    if stride == 1:
        return ParameterFree(channels, 1)
    if stride != 2:
        raise ValueError(f"skip_connect supports stride 1 or 2, got {stride}")
    return FactorizedReduce(channels, stride)


_ACTIVATIONS = {
    "Relu": nn.relu,
    "Tanh": jnp.tanh,
    "Sigmoid": nn.sigmoid,
    "Elu": nn.elu,
    "Gelu": nn.gelu,
    "Selu": nn.selu,
    "Silu": nn.silu,
}

OpFactory = Callable[[int, int], nn.Module]
OPS: dict[str, OpFactory] = {}
for _k in (3, 5):
    for _relu, _suffix in ((False, ""), (True, "Relu")):
        OPS[f"Conv{_k}x{_k}{_suffix}"] = functools.partial(Conv, kernel=_k, relu=_relu)
        OPS[f"DilConv{_k}x{_k}{_suffix}"] = functools.partial(
            Conv, kernel=_k, dilation=2, relu=_relu
        )
        OPS[f"DepthConv{_k}x{_k}{_suffix}"] = functools.partial(DepthConv, kernel=_k, relu=_relu)
        OPS[f"DepthSepConv{_k}x{_k}{_suffix}"] = functools.partial(
            DepthConv, kernel=_k, separable=True, relu=_relu
        )
for _name, _fn in _ACTIVATIONS.items():
    OPS[_name] = functools.partial(ParameterFree, fn=_fn)
for _k in (2, 3, 4, 5):
    OPS[f"MaxPool{_k}x{_k}"] = functools.partial(Pool, kind="max", size=_k)
    OPS[f"AveragePool{_k}x{_k}"] = functools.partial(Pool, kind="avg", size=_k)
OPS["SkipConnection"] = ParameterFree
OPS["Zero"] = Zero
# Classic DARTS (Liu et al. 2019), original definitions.
OPS["sep_conv_3x3"] = functools.partial(SepConv, kernel=3)
OPS["sep_conv_5x5"] = functools.partial(SepConv, kernel=5)
OPS["dil_conv_3x3"] = functools.partial(ReLUConvBN, kernel=3, dilation=2)
OPS["dil_conv_5x5"] = functools.partial(ReLUConvBN, kernel=5, dilation=2)
OPS["max_pool_3x3"] = functools.partial(Pool, kind="max", size=3, normalize=True)
OPS["avg_pool_3x3"] = functools.partial(Pool, kind="avg", size=3, normalize=True)
OPS["skip_connect"] = _classic_skip
OPS["none"] = Zero

# Ops that mean "no edge": dropped by discretization, skipped by the mixed op.
ZERO_OPS = frozenset({"Zero", "none"})
# Ops without weights: their share of the mixture warns of skip collapse.
PARAMETER_FREE_OPS = frozenset(
    set(_ACTIVATIONS)
    | {"SkipConnection", "skip_connect"}
    | ZERO_OPS
    | {n for n in OPS if "Pool" in n or "pool" in n}
)

SEARCH_SPACES: dict[str, tuple[str, ...]] = {
    "rl_darts_default": ("Conv3x3", "Relu", "Tanh", "SkipConnection", "Zero"),
    "rl_darts_conv": (
        "Conv3x3Relu",
        "DilConv3x3Relu",
        "Conv5x5Relu",
        "DilConv5x5Relu",
        "SkipConnection",
        "Zero",
    ),
    "darts_classic": (
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "none",
    ),
    # Small spaces for debugging and CPU demos.
    "conv3x3_only": ("Conv3x3Relu", "SkipConnection", "Zero"),
    "activations": ("Relu", "Tanh", "Sigmoid", "Elu", "Gelu", "Silu", "SkipConnection", "Zero"),
}


def check_op(name: str) -> str:
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; valid ops: {', '.join(sorted(OPS))}")
    return name


def make_op(op: str, channels: int, stride: int = 1, **module_kwargs) -> nn.Module:
    """Builds the registered op ``op`` with the given width and stride.

    ``module_kwargs`` go to the Flax module (e.g. ``name=``).
    """
    check_op(op)
    if channels <= 0:
        raise ValueError(f"channels must be positive, got {channels}")
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    return OPS[op](channels, stride, **module_kwargs)


def resolve_search_space(space: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A search space name from SEARCH_SPACES, or any sequence of registered op names."""
    if isinstance(space, str):
        if space in SEARCH_SPACES:
            return SEARCH_SPACES[space]
        raise ValueError(
            f"unknown search space {space!r}; valid search spaces: "
            f"{', '.join(SEARCH_SPACES)} (or a tuple of op names)"
        )
    ops = tuple(check_op(op) for op in space)
    if not ops:
        raise ValueError("a search space needs at least one op")
    if len(set(ops)) != len(ops):
        raise ValueError(f"search space lists an op twice: {ops}")
    return ops
