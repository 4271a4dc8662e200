"""Op-recovery sanity check of the DARTS machinery, without RL.

A "teacher" cell (a random genotype from ``random_search``, random weights) labels
synthetic inputs ``x ~ N(0, 1)``; a supernet over the same op set, wiring and output
mode learns to regress ``y = teacher(x) + noise`` with the alpha machinery of the RL
search (``arch.make_arch_step``, ``arch.make_alpha_optimizer``), and is discretized with
``cells.discretize``. The score is the share of the teacher's kept edges
``(input index, op)`` that the discretized cell keeps too; ``chance_share`` is that
share's expectation for a random genotype.

Op set (``OPS``): ops whose outputs stay different after the per-node batch norm, so
that the teacher is identifiable at all. ``Conv3x3`` mixes channels and pixels with
weights; ``Relu`` is the only rectifier (an |x| part no linear op has); ``MaxPool3x3``
is a non-linear spatial op (its linear part explains ~30% of its variance);
``SkipConnection`` is the identity; ``Zero`` lets an edge switch off, without which
edge strengths would not say which inputs a node uses. Saturating activations such as
``Tanh``/``Sigmoid`` are left out on purpose: on unit-variance inputs they correlate
0.97/0.99 with the identity, so after the batch norm they are the skip connection
up to a scale the mixing weights absorb, and no search could tell them apart.
"""
from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rldarts import arch
from rldarts import cells as cells_lib
from rldarts.genotypes import CellGenotype
from rldarts.random_search import real_ops, sample_cell_genotype, sample_rng

OPS = ("Conv3x3", "Relu", "MaxPool3x3", "SkipConnection", "Zero")


@dataclasses.dataclass(frozen=True)
class RecoveryConfig:
    ops: tuple[str, ...] = OPS
    num_nodes: int = 4
    k: int = 2
    output_mode: str = "concat_conv"
    channels: int = 4
    image_size: int = 8
    batch_size: int = 32
    steps: int = 300
    mode: str = "alternating"  # arch.make_arch_step mode: alternating | joint
    weight_lr: float = 1e-2
    alpha_lr: float = 3e-2
    alpha_weight_decay: float = 0.0
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


def make_data(teacher: CellGenotype, cfg: RecoveryConfig, key) -> tuple:
    """Training and held-out pools, (num_batches, B, H, W, C) each, labelled per batch
    (the cells' batch norm uses batch statistics)."""
    model = cells_lib.FixedCell(cfg.channels, teacher, output_mode=cfg.output_mode)
    shape = (2, cfg.num_batches, cfg.batch_size, cfg.image_size, cfg.image_size,
             cfg.channels)
    k_init, k_x, k_noise = jax.random.split(key, 3)
    x = jax.random.normal(k_x, shape, jnp.float32)
    params = model.init(k_init, x[0, 0])
    y = jax.jit(jax.vmap(jax.vmap(lambda xb: model.apply(params, xb))))(x)
    y = y + cfg.noise * jax.random.normal(k_noise, y.shape, jnp.float32)
    return (x[0], y[0]), (x[1], y[1])


def _alpha_cfg(cfg: RecoveryConfig):
    return SimpleNamespace(optimizer="adam", learning_rate=cfg.alpha_lr, b1=0.5, b2=0.999,
                           weight_decay=cfg.alpha_weight_decay)


def make_trainer(cfg: RecoveryConfig):
    """Returns ``train(key, train_pool, heldout_pool) -> (alphas, final_loss)``, jitted:
    the supernet, its step and the whole loop (``lax.scan``) compile once per config."""
    model = cells_lib.SearchCell(cfg.channels, cfg.ops, num_nodes=cfg.num_nodes,
                                 output_mode=cfg.output_mode)
    weight_opt = optax.adam(cfg.weight_lr)
    alpha_opt = arch.make_alpha_optimizer(_alpha_cfg(cfg), weight_opt)

    def loss_fn(params, alphas, batch):
        x, y = batch
        loss = jnp.mean((model.apply(params, x, alphas) - y) ** 2)
        return loss, {}

    step = arch.make_arch_step(cfg.mode, loss_fn, weight_opt, alpha_opt)

    @jax.jit
    def train(key, train_pool, heldout_pool):
        alphas = cells_lib.init_alphas(cfg.ops, cfg.num_nodes)
        params = model.init(key, train_pool[0][0], alphas)
        carry = (params, alphas, weight_opt.init(params), alpha_opt.init(alphas))
        n = train_pool[0].shape[0]

        def body(carry, t):
            pick = lambda pool, j: jax.tree.map(lambda a: a[j % n], pool)  # noqa: E731
            params, alphas, w_state, a_state = carry
            params, alphas, w_state, a_state, metrics = step(
                params, alphas, w_state, a_state, pick(train_pool, t),
                pick(heldout_pool, t))
            return (params, alphas, w_state, a_state), metrics["loss"]

        (params, alphas, _, _), losses = jax.lax.scan(body, carry, jnp.arange(cfg.steps))
        return alphas, losses

    return train


def run_seed(seed: int, cfg: RecoveryConfig, train=None) -> dict:
    """One teacher (sample ``seed`` of the random-genotype stream 0) and one search."""
    train = train or make_trainer(cfg)
    teacher = sample_cell_genotype(cfg.ops, cfg.num_nodes, cfg.k, sample_rng(0, seed))
    k_data, k_init = jax.random.split(jax.random.PRNGKey(seed))
    train_pool, heldout_pool = make_data(teacher, cfg, k_data)
    alphas, losses = train(k_init, train_pool, heldout_pool)
    found = cells_lib.discretize([np.asarray(a) for a in alphas], cfg.ops, cfg.k)
    losses = np.asarray(losses)
    return {"seed": seed, "share": edge_share(teacher, found),
            "teacher": teacher.to_dict(), "found": found.to_dict(),
            "first_loss": float(losses[0]), "final_loss": float(losses[-10:].mean())}


def run(seeds: Sequence[int], cfg: RecoveryConfig = RecoveryConfig()) -> dict:
    """Per-seed results, their mean share and the chance level."""
    t0 = time.time()
    train = make_trainer(cfg)
    per_seed = [run_seed(s, cfg, train) for s in seeds]
    shares = [r["share"] for r in per_seed]
    return {"config": dataclasses.asdict(cfg), "per_seed": per_seed,
            "mean_share": float(np.mean(shares)),
            "chance": chance_share(cfg.num_nodes, cfg.k, len(real_ops(cfg.ops))),
            "wall_s": round(time.time() - t0, 2)}
