"""Search methods (the config's ``arch.method``): how a supernet edge mixes its candidate
ops, which architecture parameters a method keeps beside the alphas, its temperature
schedule and the temperature its op distribution is read at.

* ``darts`` (Liu et al. 2019): every op, weighted by softmax(alphas).
* ``gdas`` (Dong & Yang 2019): one op per edge per forward pass, drawn from
  softmax(alphas) by the Gumbel-max trick, one draw per cell type shared by every cell
  of the type and by the batch; only the drawn op runs (``lax.switch``), scaled by a
  weight whose value is 1 and whose gradient is that of the Gumbel-softmax sample at
  temperature 1 / inverse temperature (straight-through). The schedule anneals the
  Gumbel tau; the draws follow softmax(alphas) at temperature 1.
* ``pc_darts`` (Xu et al. 2020): the mixture runs on the first 1/K of the edge's
  channels, the rest bypass it (max-pooled on strided edges), then a channel shuffle;
  each node weights its incoming edges by softmax(edge weights), one weight per edge,
  kept in ``alphas[EDGE_WEIGHTS]`` and trained like the alphas. Discretization then
  ranks edges by strength x softmax(edge weights) (``genotypes.discretize`` reads the
  edge weights from the alpha pytree).

One registry entry per method (``METHODS``); everything else asks ``get(name)``. Adding a
method = a subclass overriding what it changes, one entry, and its tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rldarts.model import edges, remat
from rldarts.model.genotypes import EDGE_WEIGHTS

Alphas = list  # one array per node, node i: (num_inputs + i, num_ops)


class SearchMethod:
    """DARTS; the other methods override what they change."""

    name = "darts"
    samples = False  # draws one architecture per cell type and forward pass ('arch' RNG)
    edge_weights = False  # keeps per-edge weights beside the alphas (alphas[EDGE_WEIGHTS])

    def inverse_temperature(self, arch_cfg, progress) -> jax.Array:
        """The softmax's inverse temperature at ``progress`` in [0, 1]: a linear anneal
        from ``arch.inverse_temperature`` to ``arch.final_inverse_temperature``."""
        start, end = arch_cfg.inverse_temperature, arch_cfg.final_inverse_temperature
        return jnp.float32(start + (end - start) * jnp.clip(progress, 0.0, 1.0))

    def distribution_inverse_temperature(self, inv_temp) -> float:
        """The inverse temperature at which softmax(alphas) is the supernet's op
        distribution (diagnostics, discretization)."""
        return float(inv_temp)

    def extra_alphas(self, cell_types, num_nodes: int, num_inputs: int = 1) -> dict:
        """Architecture parameters beside the alphas of each cell type."""
        return {}

    def check_widths(self, widths, partial_channels_k: int) -> None:
        """Refuses cell widths the method cannot split (one line)."""

    def check_cell(self, channels, partial_channels_k, edge_weights, num_inputs, num_nodes):
        """Refuses what a cell of this method cannot run with (one line)."""

    def draw(self, key, alphas: Alphas, inverse_temperature) -> list | None:
        """One architecture of a cell type for this forward pass (sampling methods)."""
        return None

    def node_weights(self, node_alphas, inverse_temperature, node_draw):
        """What a node hands its edges: the mixture weights of each edge."""
        return jax.nn.softmax(inverse_temperature * node_alphas, axis=-1)

    def edge(self, h, j, weights, node_edge_weights, channels, ops, stride, k, name, level):
        """Edge j of a node: its output for input ``h`` (made inside the cell's compact
        call, so its parameters are the cell's ``node{i}_edge{j}/<op name>``); ``level``:
        ``net.remat`` (``edge`` recomputes it in the backward pass)."""
        return remat.at(edges.MixedOp, level, "edge")(channels, ops, stride, name=name)(
            h, weights[j]
        )


class Gdas(SearchMethod):
    name = "gdas"
    samples = True

    def inverse_temperature(self, arch_cfg, progress) -> jax.Array:
        """1 / tau of the Gumbel-softmax, tau annealed linearly from ``arch.gumbel_tau``
        to ``arch.final_gumbel_tau`` (GDAS: 10 -> 0.1)."""
        start, end = arch_cfg.gumbel_tau, arch_cfg.final_gumbel_tau
        return jnp.float32(1.0 / (start + (end - start) * jnp.clip(progress, 0.0, 1.0)))

    def distribution_inverse_temperature(self, inv_temp) -> float:
        return 1.0  # the draws follow softmax(alphas) whatever the Gumbel temperature

    def draw(self, key, alphas: Alphas, inverse_temperature) -> list:
        """Per node, the drawn op per edge and its straight-through one-hot weights:
        ``[(index (edges,), weights (edges, ops)), ...]``, fresh Gumbel noise per node."""
        keys = jax.random.split(key, len(alphas))
        return [
            edges.gumbel_hard_weights(a, jax.random.gumbel(k, a.shape), inverse_temperature)
            for k, a in zip(keys, alphas)
        ]

    def node_weights(self, node_alphas, inverse_temperature, node_draw):
        return node_draw

    def edge(self, h, j, weights, node_edge_weights, channels, ops, stride, k, name, level):
        index, hard = weights
        sampled = remat.at(edges.SampledOp, level, "edge")(channels, ops, stride, name=name)
        return sampled(h, index[j], hard[j])


class PcDarts(SearchMethod):
    name = "pc_darts"
    edge_weights = True

    def extra_alphas(self, cell_types, num_nodes: int, num_inputs: int = 1) -> dict:
        """Edge-normalisation weights per cell type: zeros (equal edges)."""
        if not cell_types:
            return {}
        return {EDGE_WEIGHTS: {t: init_edge_weights(num_nodes, num_inputs) for t in cell_types}}

    def check_widths(self, widths, partial_channels_k: int) -> None:
        for width in widths:
            edges.check_partial_channels(width, partial_channels_k)

    def check_cell(self, channels, partial_channels_k, edge_weights, num_inputs, num_nodes):
        edges.check_partial_channels(channels, partial_channels_k)
        expected = [(num_inputs + i,) for i in range(num_nodes)]
        got = None if edge_weights is None else [tuple(np.shape(b)) for b in edge_weights]
        if got != expected:
            raise ValueError(f"pc_darts cell needs edge weights of shapes {expected}, got {got}")

    def edge(self, h, j, weights, node_edge_weights, channels, ops, stride, k, name, level):
        mixed = remat.at(edges.MixedOp, level, "edge")(channels, ops, stride, k, name=name)(
            h, weights[j]
        )
        return jax.nn.softmax(node_edge_weights)[j] * mixed


def init_edge_weights(num_nodes: int = 4, num_inputs: int = 1) -> Alphas:
    """PC-DARTS edge-normalisation weights of one cell type: zeros (equal edges)."""
    if num_nodes <= 0 or num_inputs <= 0:
        raise ValueError(
            f"num_nodes and num_inputs must be positive, got {num_nodes}, {num_inputs}"
        )
    return [jnp.zeros((num_inputs + i,), jnp.float32) for i in range(num_nodes)]


METHODS: dict[str, SearchMethod] = {m.name: m for m in (SearchMethod(), Gdas(), PcDarts())}
DEFAULT = "darts"


def get(name: str) -> SearchMethod:
    """The method registered as ``name``; an unknown name is refused in one line."""
    if name not in METHODS:
        raise ValueError(f"unknown arch.method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]
