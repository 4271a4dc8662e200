"""Ops: shape rule for every op at stride 1 and 2, and values against NumPy references."""

import jax
import numpy as np
import pytest

from rldarts.model import ops as ops_lib


def _np_conv_same(x, w, b, stride=1, dilation=1):
    """Direct loop cross-correlation with TF/XLA 'SAME' padding (NHWC, HWIO)."""
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    ekh, ekw = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    oh, ow = -(-h // stride), -(-wd // stride)
    ph = max((oh - 1) * stride + ekh - h, 0)
    pw = max((ow - 1) * stride + ekw - wd, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((n, oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for c in range(kw):
                    patch = xp[:, i * stride + a * dilation, j * stride + c * dilation, :]
                    out[:, i, j, :] += patch @ w[a, c]
    return out + b


def _np_pool_same(x, size, stride, kind):
    n, h, w, c = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph, pw = max((oh - 1) * stride + size - h, 0), max((ow - 1) * stride + size - w, 0)
    top, left = ph // 2, pw // 2
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride - top, j * stride - left
            win = x[:, max(r0, 0) : min(r0 + size, h), max(c0, 0) : min(c0 + size, w), :]
            out[:, i, j] = win.max(axis=(1, 2)) if kind == "max" else win.mean(axis=(1, 2))
    return out


ALL_OPS = sorted(ops_lib.OPS)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", ALL_OPS)
def test_every_op_shape_rule(name, stride):
    x = np.random.RandomState(0).randn(2, 9, 9, 8).astype(np.float32)
    op = ops_lib.make_op(name, 8, stride)
    params = op.init(jax.random.PRNGKey(0), x)
    y = op.apply(params, x)
    assert y.shape == (2, 5 if stride == 2 else 9, 5 if stride == 2 else 9, 8)
    assert np.all(np.isfinite(np.asarray(y)))


@pytest.mark.parametrize(
    "name,stride,dilation",
    [("Conv3x3", 1, 1), ("Conv5x5", 2, 1), ("DilConv3x3", 1, 2), ("DilConv5x5", 2, 2)],
)
def test_conv_ops_match_numpy(name, stride, dilation):
    x = np.random.RandomState(1).randn(2, 8, 8, 4).astype(np.float32)
    op = ops_lib.make_op(name, 4, stride)
    params = op.init(jax.random.PRNGKey(1), x)
    conv = params["params"]["Conv_0"]
    ref = _np_conv_same(x, np.asarray(conv["kernel"]), np.asarray(conv["bias"]), stride, dilation)
    np.testing.assert_allclose(np.asarray(op.apply(params, x)), ref, atol=1e-4)
    relu_op = ops_lib.make_op(name + "Relu", 4, stride)
    np.testing.assert_allclose(np.asarray(relu_op.apply(params, x)), np.maximum(ref, 0), atol=1e-4)


def test_depthwise_conv_matches_numpy():
    x = np.random.RandomState(2).randn(2, 6, 6, 3).astype(np.float32)
    op = ops_lib.make_op("DepthConv3x3", 3, 1)
    params = op.init(jax.random.PRNGKey(2), x)
    k, b = (np.asarray(params["params"]["Conv_0"][n]) for n in ("kernel", "bias"))
    # One filter per channel: a diagonal full kernel is the same map.
    full = np.zeros((3, 3, 3, 3), np.float32)
    for c in range(3):
        full[:, :, c, c] = k[:, :, 0, c]
    np.testing.assert_allclose(
        np.asarray(op.apply(params, x)), _np_conv_same(x, full, b), atol=1e-4
    )


@pytest.mark.parametrize(
    "name,fn",
    [
        ("Relu", lambda x: np.maximum(x, 0)),
        ("Tanh", np.tanh),
        ("Sigmoid", lambda x: 1 / (1 + np.exp(-x))),
        ("SkipConnection", lambda x: x),
        ("Silu", lambda x: x / (1 + np.exp(-x))),
        ("Elu", lambda x: np.where(x > 0, x, np.exp(x) - 1)),
    ],
)
def test_parameter_free_ops(name, fn):
    x = np.random.RandomState(3).randn(2, 7, 7, 4).astype(np.float32)
    op = ops_lib.make_op(name, 4, 1)
    np.testing.assert_allclose(np.asarray(op.apply({}, x)), fn(x), atol=1e-5)
    # Strided: the official rule puts a 3x3 average pool with the stride in front.
    op2 = ops_lib.make_op(name, 4, 2)
    np.testing.assert_allclose(
        np.asarray(op2.apply({}, x)), fn(_np_pool_same(x, 3, 2, "avg")), atol=1e-5
    )


@pytest.mark.parametrize("name,kind", [("MaxPool3x3", "max"), ("AveragePool3x3", "avg")])
@pytest.mark.parametrize("stride", [1, 2])
def test_pools_match_numpy(name, kind, stride):
    x = np.random.RandomState(4).randn(2, 7, 7, 3).astype(np.float32)
    y = ops_lib.make_op(name, 3, stride).apply({}, x)
    np.testing.assert_allclose(np.asarray(y), _np_pool_same(x, 3, stride, kind), atol=1e-5)


def _np_pool_grad(x, g, size, stride, kind):
    """Gradient of a 'SAME' pool. Max: each output's gradient goes to the first maximum
    of its window in row-major order (XLA's select-and-scatter, PyTorch). Average (of
    the real pixels only): shared equally by the window's real pixels."""
    n, h, w, c = x.shape
    oh, ow = g.shape[1:3]
    ph, pw = max((oh - 1) * stride + size - h, 0), max((ow - 1) * stride + size - w, 0)
    dx = np.zeros_like(x)
    for i in range(oh):
        for j in range(ow):
            window = [
                (i * stride - ph // 2 + a, j * stride - pw // 2 + e)
                for a in range(size)
                for e in range(size)
            ]
            window = [(r, q) for r, q in window if 0 <= r < h and 0 <= q < w]
            if kind == "avg":
                for r, q in window:
                    dx[:, r, q, :] += g[:, i, j, :] / len(window)
                continue
            for b in range(n):
                for ch in range(c):
                    values = [x[b, r, q, ch] for r, q in window]
                    r, q = window[int(np.argmax(values))]  # argmax: the first maximum
                    dx[b, r, q, ch] += g[b, i, j, ch]
    return dx


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    "shape,size,stride",
    [
        ((2, 8, 8, 3), 3, 2),
        ((2, 9, 7, 2), 3, 2),
        ((2, 7, 9, 2), 4, 2),
        ((1, 9, 9, 2), 5, 3),
        ((2, 7, 7, 2), 3, 1),
        ((2, 6, 5, 2), 2, 1),
    ],
)
def test_pool_values_and_gradients_match_numpy(shape, size, stride, kind):
    # Integer-valued inputs make ties common (as after a ReLU), where the max rule matters.
    rng = np.random.RandomState(6)
    x = np.round(rng.randn(*shape)).astype(np.float32)
    pool = ops_lib.max_pool if kind == "max" else ops_lib.avg_pool
    y, vjp = jax.vjp(lambda x: pool(x, size, stride), x)
    np.testing.assert_allclose(np.asarray(y), _np_pool_same(x, size, stride, kind), atol=1e-6)
    g = rng.randn(*y.shape).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(jax.jit(vjp)(g)[0]), _np_pool_grad(x, g, size, stride, kind), atol=1e-6
    )


def test_max_pool_training_forward_keeps_nans():
    """The training forward (computed apart from the backward on CPU) lets a NaN input
    reach the output, wherever it is, so a NaN loss still stops the run."""
    for where in ((0, 0, 0, 0), (1, 4, 5, 2)):
        x = np.random.RandomState(7).randn(2, 8, 8, 3).astype(np.float32)
        x[where] = np.nan
        y, _ = jax.vjp(lambda x: ops_lib.max_pool(x, 3, 2), x)
        y = np.asarray(y)
        assert np.isnan(y[where[0], where[1] // 2, where[2] // 2, where[3]])
    clean = np.random.RandomState(7).randn(2, 8, 8, 3).astype(np.float32)
    assert np.isfinite(np.asarray(jax.vjp(lambda x: ops_lib.max_pool(x, 3, 2), clean)[0])).all()


def test_zero_and_classic_bn():
    x = np.random.RandomState(5).randn(4, 6, 6, 8).astype(np.float32) * 3 + 1
    assert not np.any(np.asarray(ops_lib.make_op("Zero", 8, 2).apply({}, x)))
    op = ops_lib.make_op("sep_conv_3x3", 8, 1)
    y = np.asarray(op.apply(op.init(jax.random.PRNGKey(0), x), x))
    # Classic ops end in a batch-statistics BN without affine: zero mean, unit variance.
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1, atol=1e-2)


def test_bad_names_list_valid_choices():
    with pytest.raises(ValueError, match="unknown op 'Conv7x7'.*valid ops:.*Conv3x3"):
        ops_lib.make_op("Conv7x7", 8)
    with pytest.raises(ValueError, match="unknown search space 'nope'.*rl_darts_conv"):
        ops_lib.resolve_search_space("nope")
    with pytest.raises(ValueError, match="channels must be positive"):
        ops_lib.make_op("Conv3x3", 0)
    assert ops_lib.resolve_search_space(("Relu", "Zero")) == ("Relu", "Zero")


def test_search_spaces_as_specified():
    s = ops_lib.SEARCH_SPACES
    assert s["rl_darts_default"] == ("Conv3x3", "Relu", "Tanh", "SkipConnection", "Zero")
    assert s["rl_darts_conv"] == (
        "Conv3x3Relu",
        "DilConv3x3Relu",
        "Conv5x5Relu",
        "DilConv5x5Relu",
        "SkipConnection",
        "Zero",
    )
    assert len(s["darts_classic"]) == 8
    for ops in s.values():
        ops_lib.resolve_search_space(ops)
