"""Architecture updates, shared by every agent: the alpha optimizer, the update modes,
the softmax temperature schedule and the alpha diagnostics.

Modes (``config.arch.mode``):
* ``joint``: one RL loss; weights and alphas both step on every minibatch (the
  official RL-DARTS code, single-level).
* ``alternating``: first-order bilevel DARTS. On each step the alphas move on a
  held-out minibatch, then the weights on a training minibatch. Held-out data are
  the last ``heldout_envs`` env columns of each rollout: envs playing levels outside
  the training set (``heldout_source='unseen_levels'``) or simply a share of the
  training envs (``heldout_source='rollout_split'``).
* ``frozen``: alphas fixed; the supernet is a plain network (ablations) and every
  fixed network (IMPALA, a discretized cell) trains this way.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rldarts import cells as cells_lib

MODES = ("joint", "alternating", "frozen")
OPTIMIZERS = ("adam", "same_as_weights")
HELDOUT_SOURCES = ("unseen_levels", "rollout_split")


def make_alpha_optimizer(arch_cfg, weight_optimizer: optax.GradientTransformation
                         ) -> optax.GradientTransformation:
    """DARTS default: Adam(lr 3e-4, b1 0.5, b2 0.999) with L2 weight decay 1e-3 added to
    the gradient (as torch's Adam weight_decay); or the weights' own optimizer (official
    RL-DARTS: one Adam for everything)."""
    if arch_cfg.optimizer == "same_as_weights":
        return weight_optimizer
    return optax.chain(
        optax.add_decayed_weights(arch_cfg.weight_decay),
        optax.scale_by_adam(b1=arch_cfg.b1, b2=arch_cfg.b2),
        optax.scale(-arch_cfg.learning_rate),
    )


def inverse_temperature(arch_cfg, progress) -> jax.Array:
    """Linear anneal from ``inverse_temperature`` to ``final_inverse_temperature``
    over training (progress in [0, 1]); constant when both are equal (default 1)."""
    start, end = arch_cfg.inverse_temperature, arch_cfg.final_inverse_temperature
    return jnp.float32(start + (end - start) * jnp.clip(progress, 0.0, 1.0))


def heldout_envs(arch_cfg, num_envs: int) -> int:
    """How many of the rollout's env columns feed the alpha step (alternating only)."""
    if arch_cfg.mode != "alternating":
        return 0
    n = int(round(arch_cfg.heldout_fraction * num_envs))
    if not 0 < n < num_envs:
        raise ValueError(f"arch.heldout_fraction={arch_cfg.heldout_fraction} leaves {n} of "
                         f"{num_envs} envs held out; need between 1 and {num_envs - 1}")
    return n


def make_arch_step(mode: str, loss_fn: Callable, weight_opt, alpha_opt):
    """One optimisation step of (params, alphas) for any agent's loss.

    ``loss_fn(params, alphas, batch) -> (loss, metrics)``. ``train_batch`` moves the
    weights (and, in joint mode, the alphas); ``heldout_batch`` moves the alphas in
    alternating mode (ignored otherwise). Returns a pure function
    ``step(params, alphas, w_state, a_state, train_batch, heldout_batch)``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown arch.mode {mode!r}; valid: {', '.join(MODES)}")
    grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
    weight_grad_fn = jax.value_and_grad(loss_fn, argnums=0, has_aux=True)

    def step(params, alphas, w_state, a_state, train_batch, heldout_batch=None):
        if mode == "alternating":
            # First-order DARTS: alphas descend the held-out loss at the current weights.
            _, (_, a_grads) = grad_fn(params, alphas, heldout_batch)
            a_updates, a_state = alpha_opt.update(a_grads, a_state, alphas)
            alphas = optax.apply_updates(alphas, a_updates)
        if mode == "frozen":
            # Alphas never move: skip their backward pass on the hot path.
            (loss, metrics), w_grads = weight_grad_fn(params, alphas, train_batch)
            a_grads = jax.tree.map(jnp.zeros_like, alphas)
        else:
            (loss, metrics), (w_grads, a_grads) = grad_fn(params, alphas, train_batch)
        w_updates, w_state = weight_opt.update(w_grads, w_state, params)
        params = optax.apply_updates(params, w_updates)
        if mode == "joint":
            a_updates, a_state = alpha_opt.update(a_grads, a_state, alphas)
            alphas = optax.apply_updates(alphas, a_updates)
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(w_grads),
                       alpha_grad_norm=optax.global_norm(a_grads))
        return params, alphas, w_state, a_state, metrics

    return step


def alpha_summary(alphas: dict, ops: Sequence[str], inv_temp: float) -> dict:
    """Scalars logged every iteration: mean entropy, parameter-free share (the skip-
    collapse warning), per cell type and overall."""
    out = {}
    if not alphas:
        return out
    for cell_type, a in alphas.items():
        out[f"alpha_entropy_{cell_type}"] = float(cells_lib.mean_entropy(a, inv_temp))
        out[f"param_free_share_{cell_type}"] = float(
            cells_lib.parameter_free_share(a, ops, inv_temp))
    out["alpha_entropy"] = float(np.mean([out[f"alpha_entropy_{t}"] for t in alphas]))
    out["param_free_share"] = float(np.mean([out[f"param_free_share_{t}"] for t in alphas]))
    return out


def edge_probability_scalars(alphas: dict, ops: Sequence[str], inv_temp: float) -> dict:
    """``alpha/<cell>/n<i>_e<j>/<op>`` -> probability, for TensorBoard."""
    out = {}
    for cell_type, a in alphas.items():
        for i, p in enumerate(cells_lib.edge_probabilities(a, inv_temp)):
            p = np.asarray(p)
            for j in range(p.shape[0]):
                for k, op in enumerate(ops):
                    out[f"alpha/{cell_type}/n{i}_e{j}/{op}"] = float(p[j, k])
    return out
