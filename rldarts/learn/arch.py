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
* ``unrolled``: second-order bilevel DARTS (Liu et al. 2019, eq. 6-8): as
  ``alternating``, but the alpha gradient is that of the held-out loss after one
  virtual SGD step of the weights on the training minibatch,
  ``grad_alpha L_val(w - xi grad_w L_train(w, alpha), alpha)``. Computed exactly by
  JAX (reverse over reverse: one Hessian-vector product's worth of work), not by
  DARTS's finite-difference approximation: exact at about the same cost, and no
  epsilon to tune. ``xi`` is ``arch.unrolled_lr`` (0: the weights' learning rate).
* ``frozen``: alphas fixed; the supernet is a plain network (ablations) and every
  fixed network (IMPALA, a discretized cell) trains this way.

Search methods (``config.arch.method``: how a supernet mixes its candidate ops, its extra
alphas and its temperature schedule) are registry entries of ``rldarts.model.methods``;
this module only asks the registry.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rldarts.model import cells as cells_lib
from rldarts.model import methods
from rldarts.model.genotypes import split_alphas

MODES = ("joint", "alternating", "unrolled", "frozen")
HELDOUT_MODES = ("alternating", "unrolled")  # modes whose alpha step uses held-out data
OPTIMIZERS = ("adam", "same_as_weights")
HELDOUT_SOURCES = ("unseen_levels", "rollout_split")


class ArchState(NamedTuple):
    """What one optimisation step moves: the weights, the alphas (their own pytree,
    never inside the module params) and the two optimizer states."""

    params: dict
    alphas: dict
    weight_opt_state: optax.OptState
    alpha_opt_state: optax.OptState


def make_alpha_optimizer(
    arch_cfg, weight_optimizer: optax.GradientTransformation
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
    """The inverse temperature the supernet's softmax runs at, at ``progress`` in
    [0, 1]: the search method's schedule (``methods.SearchMethod.inverse_temperature``)."""
    return methods.get(method_name(arch_cfg)).inverse_temperature(arch_cfg, progress)


def distribution_inverse_temperature(arch_cfg, inv_temp: float) -> float:
    """The inverse temperature at which softmax(alphas) is the supernet's op
    distribution, for diagnostics and discretization (the search method decides)."""
    return methods.get(method_name(arch_cfg)).distribution_inverse_temperature(inv_temp)


def method_name(arch_cfg) -> str:
    return getattr(arch_cfg, "method", methods.DEFAULT)  # configs from before arch.method


def schedule_progress(iteration: int, num_iterations: int) -> float:
    """Progress of iteration ``iteration`` (0-based) of ``num_iterations`` for the
    temperature schedule: 0 on the first, 1 on the last, so the final temperature is
    reached."""
    return 1.0 if num_iterations <= 1 else min(iteration / (num_iterations - 1), 1.0)


def arch_rngs(key) -> dict:
    """``rngs`` for ``model.apply`` / ``model.init``: the stream a sampled supernet
    (``arch.method='gdas'``) draws its architecture from, one draw per forward pass.
    Deterministic methods ignore it; ``None`` (no draw possible) gives ``{}``."""
    return {} if key is None else {"arch": key}


def heldout_envs(arch_cfg, num_envs: int) -> int:
    """How many of the rollout's env columns feed the alpha step (alternating only)."""
    if arch_cfg.mode not in HELDOUT_MODES:
        return 0
    n = int(round(arch_cfg.heldout_fraction * num_envs))
    if not 0 < n < num_envs:
        raise ValueError(
            f"arch.heldout_fraction={arch_cfg.heldout_fraction} leaves {n} of "
            f"{num_envs} envs held out; need between 1 and {num_envs - 1}"
        )
    return n


# Which gradients the training batch needs in each mode (the alternating alpha step
# takes its own gradient on the held-out batch).
_TRAIN_GRADIENTS = {
    "joint": "both",
    "alternating": "weights",
    "unrolled": "weights",
    "frozen": "weights",
}


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown arch.mode {mode!r}; valid: {', '.join(MODES)}")


def make_gradients(loss_fn: Callable):
    """``grads(params, alphas, batch, *args, wrt) -> (loss, metrics, w_grads, a_grads)``
    with ``wrt`` in both | weights | alphas; gradients not taken are zeros (so frozen
    mode skips the alphas' backward pass and the alpha step the weights')."""
    both = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
    weights = jax.value_and_grad(loss_fn, argnums=0, has_aux=True)
    alphas_only = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)
    zeros = lambda tree: jax.tree.map(jnp.zeros_like, tree)

    def grads(params, alphas, batch, *args, wrt: str):
        if wrt == "weights":
            (loss, metrics), w_grads = weights(params, alphas, batch, *args)
            return loss, metrics, w_grads, zeros(alphas)
        if wrt == "alphas":
            (loss, metrics), a_grads = alphas_only(params, alphas, batch, *args)
            return loss, metrics, zeros(params), a_grads
        (loss, metrics), (w_grads, a_grads) = both(params, alphas, batch, *args)
        return loss, metrics, w_grads, a_grads

    return grads


def apply_updates(opt, grads, opt_state, values):
    updates, opt_state = opt.update(grads, opt_state, values)
    return optax.apply_updates(values, updates), opt_state


def step_metrics(loss, metrics, w_grads, a_grads) -> dict:
    return dict(
        metrics,
        loss=loss,
        grad_norm=optax.tree.norm(w_grads),
        alpha_grad_norm=optax.tree.norm(a_grads),
    )


def _make_unrolled_alpha_gradients(loss_fn: Callable, unrolled_lr: float):
    """``grads(params, alphas, train_batch, heldout_batch, *args)``: the exact gradient
    of the held-out loss after one virtual SGD step of the weights (DARTS eq. 7)."""

    def held_out_loss_after_virtual_step(alphas, params, train_batch, heldout_batch, *args):
        w_grads, _ = jax.grad(loss_fn, has_aux=True)(params, alphas, train_batch, *args)
        virtual = jax.tree.map(lambda w, g: w - unrolled_lr * g, params, w_grads)
        return loss_fn(virtual, alphas, heldout_batch, *args)[0]

    return jax.grad(held_out_loss_after_virtual_step)


def compose_step(mode, gradients, apply_weights, apply_alphas, metrics_of, unrolled_gradients=None):
    """The order of the updates in each mode, written once for both step builders."""

    def step(state: ArchState, train_batch, heldout_batch=None, *args):
        params, alphas, w_state, a_state = state
        if mode == "alternating":
            # First-order DARTS: alphas descend the held-out loss at the current weights.
            _, _, _, held_a_grads = gradients(params, alphas, heldout_batch, *args, wrt="alphas")
            alphas, a_state = apply_alphas(held_a_grads, a_state, alphas)
        if mode == "unrolled":
            # Second-order DARTS: through one virtual weight step on the training batch.
            held_a_grads = unrolled_gradients(alphas, params, train_batch, heldout_batch, *args)
            alphas, a_state = apply_alphas(held_a_grads, a_state, alphas)
        loss, metrics, w_grads, a_grads = gradients(
            params, alphas, train_batch, *args, wrt=_TRAIN_GRADIENTS[mode]
        )
        params, w_state = apply_weights(w_grads, w_state, params)
        if mode == "joint":
            alphas, a_state = apply_alphas(a_grads, a_state, alphas)
        if mode in HELDOUT_MODES:
            a_grads = held_a_grads
        return (
            ArchState(params, alphas, w_state, a_state),
            metrics_of(loss, metrics, w_grads, a_grads),
        )

    return step


def make_arch_step(mode: str, loss_fn: Callable, weight_opt, alpha_opt, unrolled_lr: float = 0.0):
    """One optimisation step of (params, alphas) for any agent's loss.

    ``loss_fn(params, alphas, batch, *args) -> (loss, metrics)``. ``train_batch`` moves
    the weights (and, in joint mode, the alphas); ``heldout_batch`` moves the alphas in
    alternating and unrolled modes (ignored otherwise; ``unrolled_lr`` is the virtual
    step's learning rate xi). Returns a pure function
    ``step(state: ArchState, train_batch, heldout_batch, *args) -> (ArchState, metrics)``;
    ``args`` (e.g. the softmax inverse temperature) go to every ``loss_fn`` call.
    ``alpha_grad_norm`` in the metrics is the norm of the alpha gradient applied (the
    held-out one in alternating and unrolled modes; zero in frozen mode).
    """
    check_mode(mode)
    if mode == "unrolled" and not unrolled_lr > 0:
        raise ValueError(f"unrolled mode needs a virtual-step learning rate > 0, got {unrolled_lr}")
    return compose_step(
        mode,
        make_gradients(loss_fn),
        functools.partial(apply_updates, weight_opt),
        functools.partial(apply_updates, alpha_opt),
        step_metrics,
        _make_unrolled_alpha_gradients(loss_fn, unrolled_lr),
    )


def alpha_summary(alphas: dict, ops: Sequence[str], inv_temp: float) -> dict:
    """Scalars logged every iteration: mean entropy, parameter-free share (the skip-
    collapse warning), per cell type and overall; for PC-DARTS also the mean entropy of
    the edge weights (softmax over each node's inputs, nodes with two or more)."""
    out = {}
    alphas, edge_weights = split_alphas(alphas)
    if not alphas:
        return out
    for cell_type, a in alphas.items():
        out[f"alpha_entropy_{cell_type}"] = float(cells_lib.mean_entropy(a, inv_temp))
        out[f"param_free_share_{cell_type}"] = float(
            cells_lib.parameter_free_share(a, ops, inv_temp)
        )
    out["alpha_entropy"] = float(np.mean([out[f"alpha_entropy_{t}"] for t in alphas]))
    out["param_free_share"] = float(np.mean([out[f"param_free_share_{t}"] for t in alphas]))
    for cell_type, betas in edge_weights.items():
        rows = [b for b in betas if np.shape(b)[0] > 1]
        out[f"edge_weight_entropy_{cell_type}"] = (
            float(np.mean([cells_lib.mean_entropy([jnp.asarray(b)[None]]) for b in rows]))
            if rows
            else 0.0
        )
    if edge_weights:
        out["edge_weight_entropy"] = float(
            np.mean([out[f"edge_weight_entropy_{t}"] for t in edge_weights])
        )
    return out


def edge_probability_scalars(alphas: dict, ops: Sequence[str], inv_temp: float) -> dict:
    """``alpha/<cell>/n<i>_e<j>/<op>`` -> probability, and for PC-DARTS
    ``edge_weight/<cell>/n<i>_e<j>`` -> softmax(edge weights), for TensorBoard."""
    out = {}
    alphas, edge_weights = split_alphas(alphas)
    for cell_type, a in alphas.items():
        for i, p in enumerate(cells_lib.edge_probabilities(a, inv_temp)):
            p = np.asarray(p)
            for j in range(p.shape[0]):
                for k, op in enumerate(ops):
                    out[f"alpha/{cell_type}/n{i}_e{j}/{op}"] = float(p[j, k])
    for cell_type, betas in edge_weights.items():
        for i, b in enumerate(betas):
            for j, w in enumerate(np.asarray(jax.nn.softmax(jnp.asarray(b)))):
                out[f"edge_weight/{cell_type}/n{i}_e{j}"] = float(w)
    return out
