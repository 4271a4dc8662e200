"""Rematerialisation (``net.remat``): trade compute for memory in the backward pass.

A memory technique, not part of the paper's model: a reader may skip this module.
``jax.checkpoint`` (Flax ``nn.remat``) around a module makes its backward pass recompute
the module's activations from its input instead of keeping them from the forward pass.
The update is the same (to float tolerance: XLA may fuse the recomputation differently),
unlike slicing the minibatch, which changes what batch norm normalises over.

Levels, from most memory and least compute to the reverse:
* ``none``: every activation kept (XLA's choice);
* ``cell``: each DARTS cell recomputed in its backward pass; kept: the cells' inputs
  and outputs, and during the backward of one cell that cell's activations;
* ``edge``: each edge (``MixedOp`` / ``SampledOp``: all of an edge's candidate ops)
  recomputed; kept: the node states and edge outputs, and the activations of one edge
  at a time. The supernet's memory is dominated by its ops' intermediates (every op of
  every edge, several tensors each), so this is the level that shrinks it most.
``auto`` (the config default) is resolved at start-up by ``rldarts.run.memory``: the
first level whose compiled update fits the device.
"""

from __future__ import annotations

import flax.linen as nn

LEVELS = ("none", "cell", "edge")


def check(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"net.remat={level!r} is not a level; valid: {', '.join(LEVELS)}")
    return level


def at(module_class: type[nn.Module], level: str, where: str) -> type[nn.Module]:
    """``module_class``, recomputed in the backward pass when ``level`` is ``where``."""
    return nn.remat(module_class) if check(level) == where else module_class
