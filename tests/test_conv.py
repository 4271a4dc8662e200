"""rldarts.model.conv: the chunked weight gradient equals lax's own gradient (and NumPy's)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from rldarts.model import conv as conv_lib


@pytest.mark.parametrize(
    "batch,chunk,max_chunks", [(64, 16, 32), (50, 16, 32), (7, 3, 2), (2048, 16, 32), (1, 16, 32)]
)
def test_chunk_bounds_cover_the_batch_once(batch, chunk, max_chunks):
    bounds = conv_lib.chunk_bounds(batch, chunk, max_chunks)
    covered = np.concatenate([np.arange(a, b) for a, b in bounds])
    np.testing.assert_array_equal(covered, np.arange(batch))
    assert len(bounds) <= max_chunks
    assert max(b - a for a, b in bounds) <= max(chunk, -(-batch // max_chunks))


CASES = [  # (kernel, stride, dilation, groups, padding): every conv shape the ops use
    (3, 1, 1, 1, "SAME"),
    (3, 2, 1, 1, "SAME"),
    (5, 1, 2, 1, "SAME"),
    (3, 1, 1, 4, "SAME"),
    (1, 2, 1, 1, "VALID"),
    (3, 1, 1, 1, ((0, 1), (2, 0))),
]


@pytest.mark.parametrize("kernel,stride,dilation,groups,padding", CASES)
def test_gradients_match_lax(kernel, stride, dilation, groups, padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(37, 9, 9, 4)), jnp.float32)  # 37: uneven chunks
    w = jnp.asarray(
        rng.normal(size=(kernel, kernel, 4 // groups, 6 if groups == 1 else 8)), jnp.float32
    )
    kw = dict(
        window_strides=(stride, stride),
        padding=padding,
        rhs_dilation=(dilation, dilation),
        feature_group_count=groups,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    ours = lambda x, w: conv_lib.conv_general_dilated(x, w, **kw)
    ref = lambda x, w: lax.conv_general_dilated(x, w, **kw)
    cot = jnp.asarray(rng.normal(size=ref(x, w).shape), jnp.float32)
    loss = lambda f: lambda x, w: jnp.sum(f(x, w) * cot)
    np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-6, atol=1e-6)
    g_ours = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, w)
    g_ref = jax.grad(loss(ref), argnums=(0, 1))(x, w)
    for a, b in zip(g_ours, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_weight_gradient_against_numpy():
    """Independent reference: dW[i,j,c,o] = sum_{n,h,w} xpad[n,h+i,w+j,c] * dy[n,h,w,o]."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6, 6, 3)).astype(np.float32)  # 40 samples: 3 chunks
    w = rng.normal(size=(3, 3, 3, 5)).astype(np.float32)
    dy = rng.normal(size=(40, 6, 6, 5)).astype(np.float32)
    f = lambda w: conv_lib.conv_general_dilated(
        jnp.asarray(x), w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    assert len(conv_lib.chunk_bounds(40)) > 1
    got = jax.vjp(f, jnp.asarray(w))[1](jnp.asarray(dy))[0]
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros_like(w)
    for i in range(3):
        for j in range(3):
            want[i, j] = np.einsum("nhwc,nhwo->co", xp[:, i : i + 6, j : j + 6], dy)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_flax_conv_keeps_parameter_names_and_values():
    x = jnp.ones((2, 8, 8, 3))
    ours = conv_lib.Conv(4, (3, 3)).init(jax.random.PRNGKey(0), x)
    ref = nn.Conv(4, (3, 3)).init(jax.random.PRNGKey(0), x)
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(a, b)
