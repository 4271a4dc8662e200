"""Image encoders (IMPALA-CNN and the DARTS networks; for MinAtar's 10x10 grids
``minatar_cnn`` and ``darts_minatar``; for DM-Control's 84x84 frame stacks ``drq`` and
``darts_dmc``) and the agents' heads (PPO, C51, SAC's actor and twin critics).

Every torso maps NHWC observations (uint8 ``(B, 64, 64, 3)`` Procgen frames, scaled
to [0, 1]; float32 ``(B, 10, 10, C)`` MinAtar grids, as they are) to features
``(B, dense)`` and takes ``(obs, alphas=None, inverse_temperature=1.0)``; the DARTS torsos are
supernets when built without a genotype (then ``alphas`` is a dict cell type ->
list per node, shared by all cells of that type) and fixed networks otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rldarts.model import cells as cells_lib
from rldarts.model import conv as conv_lib
from rldarts.model import methods
from rldarts.model import ops as ops_lib
from rldarts.model import remat as remat_lib
from rldarts.model.genotypes import EDGE_WEIGHTS, OUTPUT_MODES, NetworkGenotype
from rldarts.model.genotypes import NETWORK_CELL_TYPES as CELL_TYPES


def uses_batch_statistics(network: str) -> bool:
    """Whether the torso normalises with the current batch's statistics (the DARTS
    cells' ``ops.batch_norm``): one sample's output and gradient then depend on the
    other samples of its batch, so a batch may not be split without changing the
    update (``rldarts.learn.ppo.microbatch_size``)."""
    return network in CELL_TYPES


def _scale(obs: jax.Array) -> jax.Array:
    return obs.astype(jnp.float32) / 255.0 if obs.dtype == jnp.uint8 else obs


def _dense_out(x: jax.Array, dense: int) -> jax.Array:
    x = nn.relu(x.reshape((x.shape[0], -1)))
    return nn.relu(nn.Dense(dense)(x))


class ResidualBlock(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, x):
        y = conv_lib.Conv(self.channels, (3, 3))(nn.relu(x))
        y = conv_lib.Conv(self.channels, (3, 3))(nn.relu(y))
        return x + y


class ImpalaCNN(nn.Module):
    """Espeholt et al. 2018: per depth conv3x3, maxpool 3x3/2, two residual blocks."""

    depths: Sequence[int] = (16, 32, 32)
    dense: int = 256

    @nn.compact
    def __call__(self, obs, alphas=None, inverse_temperature=1.0):
        x = _scale(obs)
        for depth in self.depths:
            x = conv_lib.Conv(depth, (3, 3))(x)
            x = ops_lib.max_pool(x, 3, 2)
            x = ResidualBlock(depth)(x)
            x = ResidualBlock(depth)(x)
        return _dense_out(x, self.dense)


class _DartsTorso(nn.Module):
    """Shared cell construction: searched (alphas given) or fixed (genotype given). The
    fields every DARTS torso has; a torso adds its widths and layout."""

    ops: Sequence[str] = ops_lib.SEARCH_SPACES["rl_darts_conv"]
    num_nodes: int = 4
    output_mode: str = "concat_conv"
    genotype: NetworkGenotype | None = None
    method: str = methods.DEFAULT  # how the supernet's edges mix their ops (methods.METHODS)
    partial_channels_k: int = 4
    remat: str = "none"  # what the backward pass recomputes (rldarts.model.remat)

    def _gdas_draws(self, alphas, inverse_temperature, cell_types) -> dict:
        """GDAS: one architecture per cell type for this forward pass, shared by every
        cell of the type (GDAS samples the cell, not each copy of it; a subnet whose
        copies differ is outside the space a genotype describes)."""
        method = methods.get(self.method)
        if self.genotype is not None or not method.samples or not alphas:
            return {}
        return {
            t: method.draw(self.make_rng("arch"), alphas[t], inverse_temperature)
            for t in cell_types
            if t in alphas
        }

    def _cell(self, name, cell_type, channels, stride, x, alphas, inverse_temperature, draws):
        # Explicit names: a fixed network's params are then a subset of the supernet's.
        if self.genotype is not None:
            fixed = remat_lib.at(cells_lib.FixedCell, self.remat, "cell")
            return fixed(
                channels, self.genotype[cell_type], stride, self.output_mode, self.remat, name=name
            )(x)
        if alphas is None or cell_type not in alphas:
            raise ValueError(f"supernet needs alphas for cell type {cell_type!r}")
        cell = remat_lib.at(cells_lib.SearchCell, self.remat, "cell")(
            channels,
            tuple(self.ops),
            self.num_nodes,
            1,
            stride,
            self.output_mode,
            self.method,
            self.partial_channels_k,
            self.remat,
            name=name,
        )
        edge_weights = alphas.get(EDGE_WEIGHTS, {}).get(cell_type)
        return cell(x, alphas[cell_type], inverse_temperature, edge_weights, draws.get(cell_type))

    def _impala_stages(self, x, alphas, inverse_temperature, draws):
        """IMPALA-CNN's stages with each residual pair replaced by two searched normal
        cells: per depth a conv3x3, max pool 3/2, two cells (darts_impala, darts_dmc)."""
        for s, depth in enumerate(self.depths):
            x = conv_lib.Conv(depth, (3, 3), name=f"stage{s}_conv")(x)
            x = ops_lib.max_pool(x, 3, 2)
            for c in range(2):
                x = self._cell(
                    f"stage{s}_normal{c}", "normal", depth, 1, x, alphas, inverse_temperature, draws
                )
        return x


class DartsImpalaCNN(_DartsTorso):
    """IMPALA-CNN whose residual blocks are replaced by two searched normal cells."""

    depths: Sequence[int] = (16, 32, 32)
    dense: int = 256

    @nn.compact
    def __call__(self, obs, alphas=None, inverse_temperature=1.0):
        x = _scale(obs)
        draws = self._gdas_draws(alphas, inverse_temperature, CELL_TYPES["darts_impala"])
        x = self._impala_stages(x, alphas, inverse_temperature, draws)
        return _dense_out(x, self.dense)


class DartsStandardCNN(_DartsTorso):
    """Optional first conv3x3, then per depth one reduction and two normal cells."""

    depths: Sequence[int] = (16, 32, 32)
    dense: int = 256
    first_conv: bool = True
    normal_cells: int = 2

    @nn.compact
    def __call__(self, obs, alphas=None, inverse_temperature=1.0):
        x = _scale(obs)
        draws = self._gdas_draws(alphas, inverse_temperature, CELL_TYPES["darts_standard"])
        if self.first_conv:
            x = conv_lib.Conv(self.depths[0], (3, 3), name="first_conv")(x)
        for s, depth in enumerate(self.depths):
            x = self._cell(
                f"stage{s}_reduction", "reduction", depth, 2, x, alphas, inverse_temperature, draws
            )
            for c in range(self.normal_cells):
                x = self._cell(
                    f"stage{s}_normal{c}", "normal", depth, 1, x, alphas, inverse_temperature, draws
                )
        return _dense_out(x, self.dense)


class MinAtarCNN(nn.Module):
    """Young & Tian 2019's MinAtar network: conv 16 3x3 stride 1 (no padding, as their
    PyTorch ``Conv2d``) + ReLU, flatten, dense 128 + ReLU (``depths[0]``, ``dense``)."""

    channels: int = 16
    dense: int = 128

    @nn.compact
    def __call__(self, obs, alphas=None, inverse_temperature=1.0):
        x = nn.relu(conv_lib.Conv(self.channels, (3, 3), padding="VALID")(_scale(obs)))
        return nn.relu(nn.Dense(self.dense)(x.reshape((x.shape[0], -1))))


class DartsMinAtarCNN(_DartsTorso):
    """For 10x10 inputs: per depth a conv3x3 stem (stride 1) and ``normal_cells``
    searched normal cells, no reduction (a 10x10 grid has little to downsample), dense."""

    depths: Sequence[int] = (16,)
    dense: int = 128
    normal_cells: int = 2

    @nn.compact
    def __call__(self, obs, alphas=None, inverse_temperature=1.0):
        x = _scale(obs)
        draws = self._gdas_draws(alphas, inverse_temperature, CELL_TYPES["darts_minatar"])
        for s, depth in enumerate(self.depths):
            x = conv_lib.Conv(depth, (3, 3), name=f"stage{s}_conv")(x)
            for c in range(self.normal_cells):
                x = self._cell(
                    f"stage{s}_normal{c}", "normal", depth, 1, x, alphas, inverse_temperature, draws
                )
        return _dense_out(x, self.dense)


def _feature_out(x: jax.Array, dense: int) -> jax.Array:
    """SAC-AE / DrQ's encoder output: flatten, dense, LayerNorm, tanh."""
    x = nn.Dense(dense)(x.reshape((x.shape[0], -1)))
    return jnp.tanh(nn.LayerNorm()(x))


class DrQEncoder(nn.Module):
    """DrQ's pixel encoder (Kostrikov et al. 2020, after SAC-AE): four 3x3 convs of
    ``channels`` (the first stride 2, all VALID) + ReLU, then dense ``dense`` +
    LayerNorm + tanh. 84x84 inputs give 35x35 maps."""

    channels: int = 32
    dense: int = 50
    num_layers: int = 4

    @nn.compact
    def __call__(self, obs, alphas=None, inverse_temperature=1.0):
        x = _scale(obs)
        for i in range(self.num_layers):
            stride = 2 if i == 0 else 1
            x = nn.relu(conv_lib.Conv(self.channels, (3, 3), stride, padding="VALID")(x))
        return _feature_out(x, self.dense)


class DartsDMCEncoder(_DartsTorso):
    """The RL-DARTS DM-Control encoder: a 3x3 stride-2 conv of ``depths[0]``, then per
    depth an IMPALA stage whose residual blocks are two searched normal cells (conv3x3,
    max pool 3/2, two cells), then dense ``dense`` + LayerNorm + tanh (DrQ's output)."""

    depths: Sequence[int] = (32,)
    dense: int = 50

    @nn.compact
    def __call__(self, obs, alphas=None, inverse_temperature=1.0):
        x = _scale(obs)
        draws = self._gdas_draws(alphas, inverse_temperature, CELL_TYPES["darts_dmc"])
        x = nn.relu(conv_lib.Conv(self.depths[0], (3, 3), 2, name="stem")(x))
        x = self._impala_stages(x, alphas, inverse_temperature, draws)
        return _feature_out(nn.relu(x), self.dense)


class MLPTorso(nn.Module):
    """For vector observations (classic-control tests of the learners)."""

    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, obs, alphas=None, inverse_temperature=1.0):
        x = obs.reshape((obs.shape[0], -1)).astype(jnp.float32)
        for h in self.hidden:
            x = nn.tanh(nn.Dense(h, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(x))
        return x


class PolicyValueHead(nn.Module):
    """PPO heads: policy logits (small init, near-uniform start) and a scalar value."""

    num_actions: int

    @nn.compact
    def __call__(self, features):
        logits = nn.Dense(self.num_actions, kernel_init=nn.initializers.orthogonal(0.01))(features)
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(features)
        return logits, value[..., 0]


class C51DuelingHead(nn.Module):
    """Distributional dueling head: logits (B, actions, atoms) = V + A - mean_a A."""

    num_actions: int
    num_atoms: int = 51
    hidden: int = 512

    @nn.compact
    def __call__(self, features):
        hidden_v = nn.relu(nn.Dense(self.hidden, name="value_hidden")(features))
        v = nn.Dense(self.num_atoms, name="value_out")(hidden_v)
        hidden_a = nn.relu(nn.Dense(self.hidden, name="advantage_hidden")(features))
        a = nn.Dense(self.num_actions * self.num_atoms, name="advantage_out")(hidden_a)
        a = a.reshape((-1, self.num_actions, self.num_atoms))
        return v[:, None, :] + a - a.mean(axis=1, keepdims=True)


class SACActorHead(nn.Module):
    """SAC's actor on encoder features: MLP (hidden, hidden) + ReLU, then the mean and
    the unsquashed log-std of a Gaussian per action dimension (squashed by the learner)."""

    action_dim: int
    hidden: int = 1024

    @nn.compact
    def __call__(self, features):
        x = nn.relu(nn.Dense(self.hidden)(features))
        x = nn.relu(nn.Dense(self.hidden)(x))
        out = nn.Dense(2 * self.action_dim)(x)
        return out[:, : self.action_dim], out[:, self.action_dim :]


class TwinQHead(nn.Module):
    """SAC's two critics on (features, action): each an MLP (hidden, hidden, 1)."""

    hidden: int = 1024

    @nn.compact
    def __call__(self, features, actions):
        x = jnp.concatenate([features, actions.astype(features.dtype)], axis=-1)
        qs = []
        for name in ("q1", "q2"):
            h = nn.relu(nn.Dense(self.hidden, name=f"{name}_hidden0")(x))
            h = nn.relu(nn.Dense(self.hidden, name=f"{name}_hidden1")(h))
            qs.append(nn.Dense(1, name=f"{name}_out")(h)[:, 0])
        return tuple(qs)


class SACNetwork(nn.Module):
    """The shared encoder (``torso``), the actor head and the twin critics; params
    ``{'torso', 'actor_head', 'critic_head'}``. Called whole for ``init``; the learner
    calls ``encode``, ``actor`` and ``critic`` (``method=``) one by one."""

    torso: nn.Module
    action_dim: int
    hidden: int = 1024

    def setup(self):
        self.actor_head = SACActorHead(self.action_dim, self.hidden)
        self.critic_head = TwinQHead(self.hidden)

    def __call__(self, obs, actions, alphas=None, inverse_temperature=1.0):
        features = self.encode(obs, alphas, inverse_temperature)
        return self.actor(features), self.critic(features, actions)

    def encode(self, obs, alphas=None, inverse_temperature=1.0):
        return self.torso(obs, alphas, inverse_temperature)

    def actor(self, features):
        return self.actor_head(features)

    def critic(self, features, actions):
        return self.critic_head(features, actions)


class Agent(nn.Module):
    """A torso and a head; ``__call__(obs, alphas, inverse_temperature)``."""

    torso: nn.Module
    head: nn.Module

    def __call__(self, obs, alphas=None, inverse_temperature=1.0):
        return self.head(self.torso(obs, alphas, inverse_temperature))


def make_torso(
    network: str,
    *,
    depths: Sequence[int] = (16, 32, 32),
    dense: int = 256,
    search_space="rl_darts_conv",
    num_nodes: int = 4,
    output_mode: str = "concat_conv",
    first_conv: bool = True,
    genotype: NetworkGenotype | None = None,
    mlp_hidden: Sequence[int] = (64, 64),
    method: str = methods.DEFAULT,
    partial_channels_k: int = 4,
    remat: str = "none",
) -> nn.Module:
    """One entry point for every torso, from the fields of a config (``NETWORKS`` holds
    one builder per network). ``method`` and ``partial_channels_k`` only matter for a
    supernet (a DARTS network without genotype); ``remat`` (``rldarts.model.remat``) only
    for the DARTS networks (the others have no cells to recompute)."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; valid networks: {', '.join(NETWORKS)}")
    if any(d <= 0 for d in depths) or dense <= 0 or num_nodes <= 0:
        raise ValueError(
            f"depths, dense and num_nodes must be positive, got depths={depths}, "
            f"dense={dense}, num_nodes={num_nodes}"
        )
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"unknown output_mode {output_mode!r}; valid: {', '.join(OUTPUT_MODES)}")
    fields = dict(
        depths=tuple(depths),
        dense=dense,
        search_space=search_space,
        num_nodes=num_nodes,
        output_mode=output_mode,
        first_conv=first_conv,
        genotype=genotype,
        mlp_hidden=tuple(mlp_hidden),
        method=method,
        partial_channels_k=partial_channels_k,
        remat=remat_lib.check(remat),
    )
    return NETWORKS[network](network, **fields)


def _darts_fields(network, f: dict) -> dict:
    """The fields a DARTS torso takes, checked: a genotype must fit the network, a
    supernet's widths its search method."""
    if f["genotype"] is not None:
        check_genotype_fits(f["genotype"], network)
    else:
        methods.get(f["method"]).check_widths(f["depths"], f["partial_channels_k"])
    keys = ("depths", "dense", "num_nodes", "output_mode", "genotype", "method")
    return dict(
        {k: f[k] for k in keys},
        ops=ops_lib.resolve_search_space(f["search_space"]),
        partial_channels_k=f["partial_channels_k"],
        remat=f["remat"],
    )


# One builder per network: ``(network, **config fields) -> torso``.
NETWORKS = {
    "impala": lambda network, **f: ImpalaCNN(f["depths"], f["dense"]),
    "darts_impala": lambda network, **f: DartsImpalaCNN(**_darts_fields(network, f)),
    "darts_standard": lambda network, **f: DartsStandardCNN(
        first_conv=f["first_conv"], **_darts_fields(network, f)
    ),
    "minatar_cnn": lambda network, **f: MinAtarCNN(f["depths"][0], f["dense"]),
    "darts_minatar": lambda network, **f: DartsMinAtarCNN(**_darts_fields(network, f)),
    "drq": lambda network, **f: DrQEncoder(f["depths"][0], f["dense"]),
    "darts_dmc": lambda network, **f: DartsDMCEncoder(**_darts_fields(network, f)),
    "mlp": lambda network, **f: MLPTorso(f["mlp_hidden"]),  # classic control (tests)
}


def check_genotype_fits(genotype: NetworkGenotype, network: str) -> None:
    needed = CELL_TYPES.get(network)
    if needed is None:
        raise ValueError(
            f"network {network!r} takes no genotype; DARTS networks: {', '.join(CELL_TYPES)}"
        )
    missing = [t for t in needed if t not in genotype.cells]
    if missing:
        raise ValueError(
            f"genotype does not fit network {network!r}: it has cell types "
            f"{sorted(genotype.cells)}, the network needs {list(needed)}"
        )
    for t in needed:
        if genotype[t].num_inputs != 1:
            raise ValueError(
                f"genotype does not fit network {network!r}: {t} cell has "
                f"{genotype[t].num_inputs} inputs, the network's cells take 1"
            )


def init_network_alphas(
    network: str,
    search_space="rl_darts_conv",
    num_nodes: int = 4,
    key=None,
    scale: float = 0.0,
    method: str = methods.DEFAULT,
) -> dict:
    """Alphas of a supernet: cell type -> list per node (empty for fixed networks), plus
    what the method keeps beside them (``methods.SearchMethod.extra_alphas``: pc_darts'
    ``EDGE_WEIGHTS`` -> cell type -> list per node)."""
    ops = ops_lib.resolve_search_space(search_space)
    types = CELL_TYPES.get(network, ())
    keys = jax.random.split(key, len(types)) if key is not None else [None] * len(types)
    alphas = {t: cells_lib.init_alphas(ops, num_nodes, 1, k, scale) for t, k in zip(types, keys)}
    alphas.update(methods.get(method).extra_alphas(types, num_nodes))
    return alphas
