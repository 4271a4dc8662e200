"""Op-recovery sanity check of the DARTS machinery, without RL.

A "teacher" cell (a random genotype from ``random_search``, random weights) labels
synthetic inputs ``x ~ N(0, 1)``; a supernet over the same op set, wiring and output
mode learns to regress ``y = teacher(x) + noise`` with the alpha machinery of the RL
search (``arch.make_arch_step``, ``arch.make_alpha_optimizer``), and is discretized with
``cells.discretize``. The score is the share of the teacher's kept edges
``(node, input index, op)`` that the discretized cell keeps too; ``chance_share`` is
that share's expectation for a uniformly random genotype.

Op set (``OPS``): ops whose outputs stay different after the per-node batch norm, so
that the teacher is identifiable at all. ``Conv3x3`` mixes channels and pixels with
weights; ``Relu`` is the rectifier (an |x| part no linear op has; corr 0.86 with x);
``MaxPool3x3`` a non-linear spatial op (its linear part explains 31% of its variance);
``SkipConnection`` the identity; ``Zero`` lets an edge switch off, without which edge
strengths could not say which inputs a node uses. ``Tanh``/``Sigmoid`` are left out on
purpose: on unit-variance inputs they correlate 0.96/0.99 with the identity, so after
the batch norm they are the skip connection up to a scale the mixing weights absorb
(measured at the defaults, 16 seeds: with (Conv3x3, Tanh, Sigmoid, SkipConnection,
Zero) 4/22 Sigmoid and 5/18 Tanh edges found, mostly swapped with each other and the
skip; mean share 0.36 against 0.53 with ``OPS``).

Wiring: 3 nodes, output ``last_node``. With ``concat_conv`` or ``sum`` the output is
symmetric in the nodes (the output conv re-mixes them), so which node holds an edge is
less identifiable (measured at the defaults, 16 seeds: 0.40 with ``concat_conv``
against 0.53). With ``last_node`` a teacher node the last node does
not reach is dead and its edges cannot be recovered (~13% of edges at 3 nodes).

Measured at the defaults (joint, alpha lr 0.1, 300 steps, 16 seeds): mean share 0.53,
chance 0.22; ``alternating`` 0.51. What is missed is mostly functionally equivalent:
a skip from a node that is itself ``Relu(x)`` equals a ``Relu`` edge from the input,
Relu/skip on an already rectified node are nearly the same map, and one supernet edge
may carry a mixture of two ops that discretization cuts to one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rldarts.learn import arch
from rldarts.model import cells as cells_lib
from rldarts.model import methods
from rldarts.model.genotypes import CellGenotype, discretize_cell, split_alphas
from rldarts.model.random_search import real_ops, sample_cell_genotype, sample_rng

OPS = ("Conv3x3", "Relu", "MaxPool3x3", "SkipConnection", "Zero")


@dataclasses.dataclass(frozen=True)
class RecoveryConfig:
    ops: tuple[str, ...] = OPS
    num_nodes: int = 3
    k: int = 2
    output_mode: str = "last_node"
    channels: int = 4
    image_size: int = 8
    batch_size: int = 32
    steps: int = 300  # alpha steps (after the warm-up)
    warmup_steps: int = 0  # weight-only steps first (mode 'frozen'), as DARTS warm-ups
    mode: str = "joint"  # arch.make_arch_step mode: joint | alternating | unrolled
    method: str = methods.DEFAULT  # how the supernet mixes its ops (methods.METHODS)
    gumbel_tau: float = 10.0  # gdas: Gumbel-softmax temperature, annealed linearly
    final_gumbel_tau: float = 0.1  # to this over the steps (GDAS's 10 -> 0.1)
    partial_channels_k: int = 2  # pc_darts: the ops see 1/K of the 4 channels
    weight_lr: float = 1e-2
    alpha_lr: float = 0.1  # DARTS uses 3e-4 for thousands of steps; here 300
    alpha_weight_decay: float = 0.0
    inverse_temperature: float = 1.0  # softmax(inv_temp * alpha), annealed linearly
    final_inverse_temperature: float = 1.0  # to this over the steps (arch schedule)
    noise: float = 0.01  # std of the label noise (teacher outputs have std ~1)
    num_batches: int = 64  # size of the training (and held-out) data pool


def chance_share(num_nodes: int, k: int, num_real_ops: int, num_inputs: int = 1) -> float:
    """Expected share of a teacher's edges kept by a uniformly random genotype.

    Node i keeps m_i = min(k, num_inputs + i) of num_inputs + i inputs, so a given
    teacher edge's input is kept with probability m_i / (num_inputs + i), with the same
    op with probability 1 / num_real_ops. Independent of the teacher."""
    m = [min(k, num_inputs + i) for i in range(num_nodes)]
    hits = sum(mi * mi / (num_inputs + i) for i, mi in enumerate(m))
    return hits / (sum(m) * num_real_ops)


def edge_share(teacher: CellGenotype, found: CellGenotype) -> float:
    """Share of the teacher's (node, input index, op) edges present in ``found``."""
    t = {(n, i, op) for n, node in enumerate(teacher.nodes) for i, op in node}
    f = {(n, i, op) for n, node in enumerate(found.nodes) for i, op in node}
    return len(t & f) / len(t)


def _random_params(model, x, rng: np.random.Generator, *args):
    """Teacher weights: conv kernels N(0, 1/fan_in) (the scale of Flax's default
    init), everything else 0. Drawn with NumPy: compiling ``model.init`` takes seconds.
    (Only shapes are traced, with an ``'arch'`` stream for sampled students.)"""

    def draw(path, leaf):
        if getattr(path[-1], "key", None) == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return rng.standard_normal(leaf.shape, np.float32) / np.sqrt(fan_in)
        return np.zeros(leaf.shape, leaf.dtype)

    key = jax.random.PRNGKey(0)
    shapes = jax.eval_shape(
        lambda x, *args: model.init({"params": key, **arch.arch_rngs(key)}, x, *args), x, *args
    )
    return jax.tree_util.tree_map_with_path(draw, shapes)


def make_data(teacher: CellGenotype, cfg: RecoveryConfig, seed: int) -> tuple:
    """Training and held-out pools, (num_batches, B, H, W, C) each, labelled per batch
    (the cells' batch norm uses batch statistics). Inputs and noise come from NumPy:
    ``jax.random`` at this size compiles for seconds on a CPU."""
    model = cells_lib.FixedCell(cfg.channels, teacher, output_mode=cfg.output_mode)
    rng = np.random.default_rng([seed, 1])
    shape = (2, cfg.num_batches, cfg.batch_size, cfg.image_size, cfg.image_size, cfg.channels)
    x = rng.standard_normal(shape, np.float32)
    params = _random_params(model, x[0, 0], rng)
    y = jax.jit(jax.vmap(jax.vmap(lambda xb: model.apply(params, xb))))(x)
    y = np.asarray(y) + cfg.noise * rng.standard_normal(y.shape, np.float32)
    return (x[0], y[0]), (x[1], y[1])


def _alpha_cfg(cfg: RecoveryConfig):
    return SimpleNamespace(
        optimizer="adam",
        learning_rate=cfg.alpha_lr,
        b1=0.5,
        b2=0.999,
        weight_decay=cfg.alpha_weight_decay,
        method=cfg.method,
        inverse_temperature=cfg.inverse_temperature,
        final_inverse_temperature=cfg.final_inverse_temperature,
        gumbel_tau=cfg.gumbel_tau,
        final_gumbel_tau=cfg.final_gumbel_tau,
    )


def _student(cfg: RecoveryConfig):
    return cells_lib.SearchCell(
        cfg.channels,
        cfg.ops,
        num_nodes=cfg.num_nodes,
        output_mode=cfg.output_mode,
        method=cfg.method,
        partial_channels_k=cfg.partial_channels_k,
    )


def init_alphas(cfg: RecoveryConfig) -> dict:
    """The student's alpha pytree: ``{'cell': alphas}`` (+ PC-DARTS edge weights)."""
    alphas = {"cell": cells_lib.init_alphas(cfg.ops, cfg.num_nodes)}
    alphas.update(methods.get(cfg.method).extra_alphas(("cell",), cfg.num_nodes))
    return alphas


def _cell_alphas(alphas: dict) -> tuple:
    """The student's (alphas, edge weights or None) out of its alpha pytree."""
    return alphas["cell"], split_alphas(alphas)[1].get("cell")


def _apply_student(model, params, x, alphas, inv_temp, key):
    cell_alphas, edge_weights = _cell_alphas(alphas)
    return model.apply(params, x, cell_alphas, inv_temp, edge_weights, rngs=arch.arch_rngs(key))


def make_trainer(cfg: RecoveryConfig):
    """Returns ``train(params, train_pool, heldout_pool, key) -> (alphas, losses per
    step)``, jitted: the supernet's steps and the whole loop (``lax.scan``) compile once
    per config. ``params``: the supernet's initial weights (``init_student``); ``key``:
    the architecture draws of ``gdas`` (one per step, shared by its two batches)."""
    model = _student(cfg)
    weight_opt = optax.adam(cfg.weight_lr)
    arch_cfg = _alpha_cfg(cfg)
    alpha_opt = arch.make_alpha_optimizer(arch_cfg, weight_opt)

    def loss_fn(params, alphas, batch):
        x, y, inv_temp, key = batch
        loss = jnp.mean((_apply_student(model, params, x, alphas, inv_temp, key) - y) ** 2)
        return loss, {}

    step = arch.make_arch_step(cfg.mode, loss_fn, weight_opt, alpha_opt, unrolled_lr=cfg.weight_lr)
    warmup = arch.make_arch_step("frozen", loss_fn, weight_opt, alpha_opt)

    @jax.jit
    def train(params, train_pool, heldout_pool, key):
        alphas = init_alphas(cfg)
        carry = arch.ArchState(params, alphas, weight_opt.init(params), alpha_opt.init(alphas))
        n = train_pool[0].shape[0]

        def loop(step_fn, carry, start, num):
            def body(carry, t):
                inv_temp = arch.inverse_temperature(arch_cfg, (t - start) / cfg.steps)
                pick = lambda pool: (
                    *jax.tree.map(lambda a: a[t % n], pool),
                    inv_temp,
                    jax.random.fold_in(key, t),
                )
                carry, metrics = step_fn(carry, pick(train_pool), pick(heldout_pool))
                return carry, metrics["loss"]

            return jax.lax.scan(body, carry, start + jnp.arange(num))

        losses = []
        if cfg.warmup_steps:
            carry, warm_losses = loop(warmup, carry, 0, cfg.warmup_steps)
            losses.append(warm_losses)
        carry, search_losses = loop(step, carry, cfg.warmup_steps, cfg.steps)
        return carry.alphas, jnp.concatenate(losses + [search_losses])

    return train


def init_student(cfg: RecoveryConfig, seed: int):
    """The supernet's initial weights (same law as the teacher's, another stream)."""
    model = _student(cfg)
    x = np.zeros((cfg.batch_size, cfg.image_size, cfg.image_size, cfg.channels), np.float32)
    cell_alphas, edge_weights = _cell_alphas(init_alphas(cfg))
    return _random_params(
        model, x, np.random.default_rng([seed, 2]), cell_alphas, 1.0, edge_weights
    )


def run_seed(seed: int, cfg: RecoveryConfig, train=None) -> dict:
    """One teacher (sample ``seed`` of the random-genotype stream 0) and one search."""
    train = train or make_trainer(cfg)
    teacher = sample_cell_genotype(cfg.ops, cfg.num_nodes, cfg.k, sample_rng(0, seed))
    train_pool, heldout_pool = make_data(teacher, cfg, seed)
    alphas, losses = train(
        init_student(cfg, seed), train_pool, heldout_pool, jax.random.PRNGKey(seed)
    )
    dist_temp = arch.distribution_inverse_temperature(
        _alpha_cfg(cfg), cfg.final_inverse_temperature
    )
    cell_alphas, edge_weights = _cell_alphas(alphas)
    found = discretize_cell(cell_alphas, cfg.ops, cfg.k, dist_temp, edge_weights)
    losses = np.asarray(losses)
    return {
        "seed": seed,
        "share": edge_share(teacher, found),
        "teacher": teacher.to_dict(),
        "found": found.to_dict(),
        "first_loss": float(losses[0]),
        "final_loss": float(losses[-10:].mean()),
    }


def run(seeds: Sequence[int], cfg: RecoveryConfig = RecoveryConfig()) -> dict:
    """Per-seed results, their mean share and the chance level."""
    t0 = time.time()
    train = make_trainer(cfg)
    per_seed = [run_seed(s, cfg, train) for s in seeds]
    shares = [r["share"] for r in per_seed]
    return {
        "config": dataclasses.asdict(cfg),
        "per_seed": per_seed,
        "mean_share": float(np.mean(shares)),
        "chance": chance_share(cfg.num_nodes, cfg.k, len(real_ops(cfg.ops))),
        "wall_s": round(time.time() - t0, 2),
    }
