"""Where a PPO update runs: the one seam behind which the back-end choices live.

``ppo.make_update`` reads as the algorithm (GAE, shuffles, epochs x minibatches of
``arch`` steps); this module decides how that runs, and a reader may skip it:
* **loop** (``ppo.update_loop``): ``scan`` traces the whole update into one jitted
  ``lax.scan`` (PureJaxRL; the accelerator default); ``host`` jits each stage and
  loops over epochs and minibatches in Python (the CPU default: XLA:CPU runs
  convolutions inside a ``lax.scan`` body several times slower than the same step on its
  own; figures: benchmarks/results/README.md).
  Both draw the same shuffles and make the same update (tests/test_ppo_update.py).
* **microbatches** (``ppo.microbatch_size``, host loop, one device): a minibatch's
  gradient as the mean of jitted slices (``make_microbatched_arch_step``, below), faster
  per sample on XLA:CPU.
* **devices** (``rldarts.learn.parallel.Topology``): minibatches laid out along the mesh's
  data axis, the update's sample set and the params replicated; the step is the
  single-device program under ``jax.jit`` shardings, so the update is the same.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from rldarts.learn import arch, parallel

# Samples per jitted forward+backward on CPU when ppo.microbatch_size is 0 (auto): the
# fastest per sample for IMPALA-CNN on XLA:CPU (benchmarks/ppo_throughput.py
# --microbatch-size; figures in benchmarks/results/README.md).
CPU_MICROBATCH = 256
# Independent gradients per jitted call on CPU, so XLA runs them on both cores at once
# (same benchmark and README).
CPU_PARTS = 4

UPDATE_LOOPS = ("auto", "scan", "host")


def update_loop(requested: str) -> str:
    """``ppo.update_loop`` resolved: ``auto`` is ``host`` on the CPU backend, else
    ``scan``."""
    if requested not in UPDATE_LOOPS:
        raise ValueError(
            f"config ppo.update_loop={requested!r} is not valid; valid "
            f"choices: {', '.join(UPDATE_LOOPS)}"
        )
    if requested == "auto":
        return "host" if jax.default_backend() == "cpu" else "scan"
    return requested


ROLLOUT_LOOPS = ("auto", "scan", "host")


def rollout_loop(requested: str, steps_on_device: bool) -> str:
    """``ppo.rollout_loop`` resolved: ``scan`` (acting and env steps in one jitted scan,
    ``Actor.act_scan``) needs JAX-native envs on one actor device (``steps_on_device``);
    ``auto`` picks it wherever it can run, on every backend: a rollout is forward passes
    only, and even XLA:CPU runs it faster as a scan than as a host loop (unlike the
    update's backward passes; benchmarks/results/README.md, issue 20)."""
    if requested not in ROLLOUT_LOOPS:
        raise ValueError(
            f"config ppo.rollout_loop={requested!r} is not valid; valid "
            f"choices: {', '.join(ROLLOUT_LOOPS)}"
        )
    if requested == "scan" and not steps_on_device:
        raise ValueError(
            "config ppo.rollout_loop='scan' needs JAX-native envs (minatar/*) on one actor "
            "device; valid choices here: auto, host"
        )
    if requested == "auto":
        return "scan" if steps_on_device else "host"
    return requested


def microbatch_size(
    requested: int, minibatch_sizes, batch_statistics: bool = False, num_devices: int = 1
) -> int:
    """Samples per gradient slice of a minibatch; 0 means the whole minibatch at once.

    ``requested`` is ``ppo.microbatch_size``: 0 = auto (``CPU_MICROBATCH`` on the CPU
    backend where it divides every minibatch, else whole minibatches); a value must
    divide every minibatch (training and held-out) that it is smaller than.

    Slicing is the same update only for networks without batch statistics. With
    ``batch_statistics`` (the DARTS torsos) auto takes whole minibatches on every
    backend, so the update is the one the ``scan`` loop and an accelerator make; an
    explicit size is then a hyperparameter, not a compute choice: batch norm over
    ``requested``-sample slices ("ghost batch norm"), part of the resume fingerprint
    (``config_checks.fingerprint``). With several learner devices the minibatch is
    already split over them: auto takes it whole, and slices are refused.
    """
    sizes = [m for m in minibatch_sizes if m]
    if requested < 0:
        raise ValueError(f"config ppo.microbatch_size={requested} must be >= 0 (0 = auto)")
    if requested and num_devices > 1:
        raise ValueError(
            f"config ppo.microbatch_size={requested} slices minibatches on "
            f"one device; with {num_devices} learner devices the minibatch "
            "is split over them: set ppo.microbatch_size=0"
        )
    if requested == 0:
        if jax.default_backend() != "cpu" or batch_statistics or num_devices > 1:
            return 0
        requested = CPU_MICROBATCH
        if any(m % requested for m in sizes if m > requested):
            return 0
    if all(m <= requested for m in sizes):
        return 0
    bad = [m for m in sizes if m > requested and m % requested]
    if bad:
        raise ValueError(
            f"config ppo.microbatch_size={requested} does not divide the "
            f"minibatch of {bad[0]} samples; use a divisor of it or 0 (auto)"
        )
    return requested


def make_minibatch_step(spec, loop: str = "host"):
    """``step(arch_state, train_mb, heldout_mb, inv_temp, arch_key) -> (arch_state,
    metrics)`` for a ``ppo.UpdateSpec``: one optimisation step on a minibatch whose
    advantages are already normalised (the learner normalises each whole minibatch, so
    microbatched gradients are exact for networks without batch statistics; see
    ``microbatch_size``). For the ``host`` loop: jitted, or a host loop over jitted
    microbatch gradients; for ``scan``: the pure step, to be traced inside the scan."""
    ppo_cfg, arch_cfg, topology = spec.ppo, spec.arch, spec.topology
    xi = (
        (arch_cfg.get("unrolled_lr", 0.0) or ppo_cfg.learning_rate)
        if arch_cfg.mode == "unrolled"
        else 0.0
    )  # the virtual step's learning rate
    pure = arch.make_arch_step(arch_cfg.mode, spec.loss_fn, spec.weight_opt, spec.alpha_opt, xi)

    def replicated_step(state, *args):
        new_state, metrics = pure(state, *args)
        return topology.constrain_replicated(new_state), metrics

    if loop == "scan":
        if ppo_cfg.microbatch_size:
            raise ValueError(
                f"config ppo.microbatch_size={ppo_cfg.microbatch_size} needs "
                "ppo.update_loop=host (the scan takes whole minibatches); "
                "set ppo.microbatch_size=0 or ppo.update_loop=host"
            )
        return replicated_step
    size = microbatch_size(
        ppo_cfg.microbatch_size,
        spec.minibatch_sizes,
        spec.batch_statistics,
        topology.num_learner_devices,
    )
    if size:
        # Parts split the slice again: only where that leaves the update unchanged.
        parts = CPU_PARTS if size % CPU_PARTS == 0 and not spec.batch_statistics else 1
        return make_microbatched_arch_step(
            arch_cfg.mode, spec.loss_fn, spec.weight_opt, spec.alpha_opt, size, parts
        )
    return jax.jit(replicated_step)


def make_microbatched_arch_step(
    mode: str, loss_fn: Callable, weight_opt, alpha_opt, microbatch_size: int, parts: int = 1
):
    """``arch.make_arch_step`` with each batch's gradient accumulated over slices of
    ``microbatch_size`` samples, one jitted call per slice, driven from the host.

    Same update as ``arch.make_arch_step`` when ``loss_fn`` is a mean of per-sample terms
    that do not depend on the other samples. Per-batch statistics break that: PPO's
    advantage normalisation is applied to the whole batch before the step, and a
    network with batch norm (the DARTS cells) normalises each slice (and each part)
    over that slice only, so callers do not slice it unless asked to
    (``ppo.microbatch_size``). Inside a call the slice is split into
    ``parts`` independent gradients summed in the program, which XLA:CPU may run on
    different cores at once. Why: on XLA:CPU an IMPALA-CNN forward+backward runs faster
    per sample on small slices than on a whole minibatch, and a ``lax.scan`` over the
    slices slower than either (figures: benchmarks/results/README.md).
    The returned ``step`` has ``arch.make_arch_step``'s signature but is a host function:
    call it outside ``jit``, with device arrays.
    """
    arch.check_mode(mode)
    if mode == "unrolled":
        raise ValueError(
            "arch.mode='unrolled' needs whole minibatches (its virtual step "
            "takes the training minibatch's gradient before the held-out "
            "loss); set ppo.microbatch_size=0"
        )
    if microbatch_size % parts:
        raise ValueError(f"{parts} parts do not divide a microbatch of {microbatch_size}")
    gradients, size, part_size = (
        arch.make_gradients(loss_fn),
        microbatch_size,
        microbatch_size // parts,
    )
    add = lambda total, new: jax.tree.map(jnp.add, total, new)

    @functools.partial(jax.jit, static_argnames="wrt")
    def slice_gradients(params, alphas, batch, index, *args, wrt):
        total = None
        for j in range(parts):
            part = jax.tree.map(
                lambda x: jax.lax.dynamic_slice_in_dim(x, index * size + j * part_size, part_size),
                batch,
            )
            out = gradients(params, alphas, part, *args, wrt=wrt)
            total = out if total is None else add(total, out)
        return total

    add_jit = jax.jit(add)
    divide = jax.jit(lambda total, n: jax.tree.map(lambda x: x / n, total))

    def accumulated(params, alphas, batch, *args, wrt):
        batch_size = jax.tree.leaves(batch)[0].shape[0]
        if batch_size % size:
            raise ValueError(
                f"microbatch size {size} does not divide a batch of {batch_size} samples"
            )
        n = batch_size // size
        total = None
        for i in range(n):
            out = slice_gradients(params, alphas, batch, i, *args, wrt=wrt)
            total = out if total is None else add_jit(total, out)
        return divide(total, n * parts)

    return arch.compose_step(
        mode,
        accumulated,
        jax.jit(functools.partial(arch.apply_updates, weight_opt)),
        jax.jit(functools.partial(arch.apply_updates, alpha_opt)),
        jax.jit(arch.step_metrics),
    )


class Loop:
    """How the stages of one update run: ``stage`` (GAE and shuffles), ``steps`` (the
    epochs x minibatches) and ``compile`` (the whole update, placed on the devices)."""

    def __init__(self, kind: str, step: Callable, topology: parallel.Topology):
        self.kind, self.step, self.topology = kind, step, topology
        self._jitted: dict = {}

    def _jit(self, fn: Callable) -> Callable:
        """One jitted wrapper per stage function, compiled once per run."""
        if fn not in self._jitted:
            self._jitted[fn] = jax.jit(fn)
        return self._jitted[fn]

    def stage(self, fn: Callable) -> Callable:
        # scan: traced inside the one outer jit; host: a jitted call of its own.
        return fn if self.kind == "scan" else self._jit(fn)

    def steps(self, state: arch.ArchState, minibatch: Callable, samples, schedule, inv_temp):
        """Runs ``step`` on ``minibatch(samples, *schedule[i])`` for every i in order
        (``schedule``: arrays with leading epochs x minibatches axes, run in host order).
        Returns the final state and the per-step metrics stacked."""
        order = lambda x: x.reshape((-1,) + x.shape[2:])
        schedule = jax.tree.map(order, schedule)
        if self.kind == "scan":

            def body(state, xs):
                *indices, arch_key = xs
                train_mb, held_mb = minibatch(samples, *indices)
                return self.step(state, train_mb, held_mb, inv_temp, arch_key)

            return jax.lax.scan(body, state, schedule)
        take = self._jit(minibatch)
        history = []
        for i in range(jax.tree.leaves(schedule)[0].shape[0]):
            *indices, arch_key = (x[i] for x in schedule)
            train_mb, held_mb = take(samples, *indices)
            state, metrics = self.step(state, train_mb, held_mb, inv_temp, arch_key)
            history.append(metrics)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)

    def compile(self, update: Callable, place: Callable) -> Callable:
        """``update(state, placed_rollout, inv_temp)`` as the learner calls it, with the
        host rollout first placed on the devices by ``place``."""
        run = jax.jit(update) if self.kind == "scan" else update
        return lambda state, rollout, inv_temp: run(state, place(rollout), inv_temp)


def make_loop(spec) -> Loop:
    """The loop a ``ppo.UpdateSpec``'s update runs in, with its minibatch step."""
    kind = update_loop(spec.ppo.update_loop)
    return Loop(kind, make_minibatch_step(spec, kind), spec.topology)
