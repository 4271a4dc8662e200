"""Devices: where the learner, the acting forward pass and each process's envs run.

One ``Topology`` per run, built from config section ``parallel`` and shared by every
agent:
* **Data-parallel learner** (``learner_devices``): a ``jax.sharding.Mesh`` with one
  axis, ``data``. Params, alphas and optimizer states are replicated; every batch
  (PPO minibatch, DQN learner batch) is sharded along its first axis. The step is a
  plain ``jax.jit`` of the single-device program, so it computes the same function
  (the gradient all-reduce, and batch norm's mean over the whole minibatch, follow from
  the shardings): N devices make the update one device makes, up to summation order.
* **Sharded acting**: the env batch of each acting forward pass is sharded over the
  actor's devices (the learner's, unless ``async_actor`` gives the actor its own).
* **Async actor** (``async_actor``, ``actor_devices``): the Sebulba split
  (``rldarts.learn.async_actor``); the learner mesh is then made of the other devices.
* **Multi-host** (``coordinator_address``): ``jax.distributed.initialize``; the mesh
  spans every process's learner devices, each process steps ``1 / process_count`` of
  the envs with seeds of its own, and its rollouts / replay samples become its rows of
  the global batch (``jax.make_array_from_process_local_data``). Process 0 writes.

On one device and one process every placement below is the identity, so single-device
runs are the programs they were before this module existed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA = "data"  # the mesh axis every batch is sharded along


def initialize(parallel_cfg) -> None:
    """``jax.distributed.initialize`` when ``parallel.coordinator_address`` is set
    (``auto``: the platform's own detection, e.g. a TPU pod or SLURM). Call before
    anything touches a JAX backend. Idempotent."""
    address = parallel_cfg.coordinator_address
    if not address or jax.distributed.is_initialized():
        return
    # Cross-process collectives of the CPU backend (tests, CPU clusters) need gloo;
    # accelerator backends ignore the setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # The preemption service installs a SIGTERM handler that only records the signal
    # for `reached_preemption_sync_point` (unused here), so SIGTERM no longer stopped
    # the run; run_lifecycle.stop_on_signals handles SIGTERM instead.
    jax.config.update("jax_enable_preemption_service", False)
    if address == "auto":
        jax.distributed.initialize()
        return
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=parallel_cfg.num_processes,
        process_id=parallel_cfg.process_id,
    )


@dataclasses.dataclass(frozen=True)
class Topology:
    """The learner mesh (global over processes) and the actor's local mesh."""

    mesh: Mesh
    actor_mesh: Mesh

    # --------------------------------------------------------------------- facts
    @property
    def num_learner_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def process_index(self) -> int:
        return jax.process_index()

    @property
    def process_count(self) -> int:
        return jax.process_count()

    @property
    def is_primary(self) -> bool:
        """The process that writes metrics, genotypes, plots and host files."""
        return jax.process_index() == 0

    @property
    def trivial(self) -> bool:
        """One learner device, one process, acting on that device: nothing to place."""
        return (
            self.num_learner_devices == 1
            and self.process_count == 1
            and self.actor_mesh.devices.flat[0] == self.mesh.devices.flat[0]
        )

    def local_share(self, n: int) -> int:
        """This process's share of ``n`` envs / batch rows (validated divisible)."""
        return n // self.process_count

    # ------------------------------------------------------------ learner side
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def batch_sharding(self, axis: int = 0) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(*([None] * axis), DATA))

    def replicate(self, tree):
        """Host or single-device values -> replicated on the learner mesh."""
        if self.trivial:
            return tree
        sharding = self.replicated()
        if self.process_count == 1:
            return jax.device_put(tree, sharding)
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree
        )

    def shard_batch(self, tree, axis: int = 0):
        """This process's rows of a batch (host arrays) -> the global batch, sharded
        along ``axis`` over the learner mesh. ``None`` stays ``None``."""
        if tree is None or self.trivial:
            return tree
        sharding = self.batch_sharding(axis)
        if self.process_count == 1:
            return jax.device_put(tree, sharding)
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree
        )

    def constrain_batch(self, tree, axis: int = 0):
        """Inside ``jit``: lay a batch out along the data axis (the data-parallel step)."""
        if tree is None or self.num_learner_devices == 1:
            return tree
        return jax.lax.with_sharding_constraint(tree, self.batch_sharding(axis))

    def constrain_replicated(self, tree):
        """Inside ``jit``: every device holds the whole value (params, or the update's
        sample set, which each device then gathers its shard of a minibatch from)."""
        if self.num_learner_devices == 1:
            return tree
        return jax.lax.with_sharding_constraint(tree, self.replicated())

    def local_rows(self, x) -> np.ndarray:
        """This process's rows of a batch-sharded (or replicated) output, on the host."""
        if self.process_count == 1:
            return np.asarray(x)
        shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
        if x.sharding.is_fully_replicated:
            return np.asarray(shards[0].data)
        return np.concatenate([np.asarray(s.data) for s in shards])

    def to_host(self, tree):
        """Replicated outputs (metrics, params) -> NumPy on every process."""
        if self.process_count == 1:
            return jax.device_get(tree)
        return jax.tree.map(
            lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, tree
        )

    # -------------------------------------------------------------- actor side
    def actor_batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.actor_mesh, PartitionSpec(DATA))

    def to_actor(self, tree):
        """The learner's replicated params -> replicated on this process's actor devices
        (a no-op when the actor shares the learner's single-process mesh)."""
        if self.trivial:
            return tree
        sharding = NamedSharding(self.actor_mesh, PartitionSpec())
        if (
            self.process_count == 1
            and self.actor_mesh.devices.shape == self.mesh.devices.shape
            and (self.actor_mesh.devices == self.mesh.devices).all()
        ):
            return tree
        local = lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x
        return jax.device_put(jax.tree.map(local, tree), sharding)

    def place_obs(self, obs: np.ndarray):
        """An env group's observations for the acting forward pass, sharded over the
        actor's devices (host NumPy when there is only one)."""
        if self.actor_mesh.devices.size == 1:
            return obs
        return jax.device_put(obs, self.actor_batch_sharding())

    # ---------------------------------------------------------- multi-process
    def allgather_json(self, value) -> list:
        """Every process's JSON-able ``value``, in process order (1 process: [value])."""
        if self.process_count == 1:
            return [value]
        raw = np.frombuffer(json.dumps(value).encode(), np.uint8)
        n = int(np.max(multihost_utils.process_allgather(np.int64(raw.size))))
        padded = np.zeros(n, np.uint8)
        padded[: raw.size] = raw
        rows = multihost_utils.process_allgather(padded)
        return [json.loads(bytes(r).rstrip(b"\0").decode()) for r in rows]

    def min_over_processes(self, values) -> np.ndarray:
        """The elementwise min of every process's int vector ``values``: a decision
        that gates a collective (DQN's start of learning) taken from host numbers
        that differ between processes is then the same everywhere."""
        values = np.asarray(values, np.int64)
        if self.process_count == 1:
            return values
        return np.asarray(multihost_utils.process_allgather(values)).min(axis=0)

    def sync(self, name: str) -> None:
        if self.process_count > 1:
            multihost_utils.sync_global_devices(name)


def check(
    parallel_cfg,
    *,
    num_envs: int,
    num_heldout: int,
    minibatches: Sequence[int] = (),
    batch_sizes: Sequence[int] = (),
    device_count: int | None = None,
    process_count: int = 1,
    rollout_sharded: bool = False,
) -> None:
    """Bad settings -> one ValueError line naming the numbers (before anything is
    written). ``minibatches``: PPO's training and held-out minibatch sizes;
    ``batch_sizes``: DQN's batch size; ``rollout_sharded``: PPO lays each env group of
    a rollout over the learner devices."""
    device_count = jax.local_device_count() if device_count is None else device_count
    ids = [int(i) for i in parallel_cfg.actor_devices] if parallel_cfg.async_actor else []
    bad = [i for i in ids if not 0 <= i < device_count]
    if bad:
        raise ValueError(
            f"config parallel.actor_devices={ids} names devices that do not "
            f"exist: {bad}; this process has {device_count} device(s), ids "
            f"0..{device_count - 1}"
        )
    if len(set(ids)) != len(ids):
        raise ValueError(f"config parallel.actor_devices={ids} repeats a device")
    n = parallel_cfg.learner_devices
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(
            f"config parallel.learner_devices={n!r} must be an int >= 0 (0 = all local devices)"
        )
    free = device_count - len(ids) if len(ids) < device_count else device_count
    if n > free:
        raise ValueError(
            f"config parallel.learner_devices={n} but only {free} of this "
            f"process's {device_count} device(s) are free for the learner"
            + (f" (parallel.actor_devices={ids})" if ids else "")
        )
    learners = (n or free) * process_count  # over every process
    actors = len(ids) or (n or free)  # per process
    groups = [("envs", num_envs - num_heldout)] + (
        [("held-out envs", num_heldout)] if num_heldout else []
    )
    for what, count in groups:
        per_process = count // process_count
        if count % process_count or per_process % actors:
            raise ValueError(
                f"{count} {what} do not divide over {process_count} "
                f"process(es) x {actors} acting device(s); use a multiple of "
                f"{process_count * actors} (ppo/dqn.num_envs, "
                "arch.heldout_fraction) or change parallel.learner_devices"
            )
        if rollout_sharded and count % learners:
            raise ValueError(
                f"{count} {what} do not divide over {learners} learner "
                f"devices; use a multiple of {learners}"
            )
    for size in [m for m in minibatches if m]:
        if size % learners:
            raise ValueError(
                f"a PPO minibatch of {size} samples does not divide over "
                f"{learners} learner devices; change ppo.num_minibatches, "
                "ppo.num_envs or parallel.learner_devices"
            )
    for size in batch_sizes:
        if size % learners:
            raise ValueError(
                f"config dqn.batch_size={size} does not divide over "
                f"{learners} learner devices; use a multiple of {learners}"
            )


def make_topology(parallel_cfg) -> Topology:
    """The run's devices (call ``initialize`` first on multi-host)."""
    local = jax.local_devices()
    ids = [int(i) for i in parallel_cfg.actor_devices] if parallel_cfg.async_actor else []
    actor_local = [local[i] for i in ids]
    free = [d for d in local if d not in actor_local] or local
    n = parallel_cfg.learner_devices or len(free)
    learner_local = free[:n]
    if jax.process_count() == 1:
        learner = learner_local
    else:
        # Every process contributes its first n free devices, in process order.
        learner = [d for p in range(jax.process_count()) for d in _free_devices_of(p, ids)[:n]]
    mesh = Mesh(np.array(learner), (DATA,))
    actor_mesh = Mesh(np.array(actor_local or learner_local), (DATA,))
    return Topology(mesh, actor_mesh)


def _free_devices_of(process: int, actor_ids: Sequence[int]):
    devices = sorted((d for d in jax.devices() if d.process_index == process), key=lambda d: d.id)
    actor = {devices[i] for i in actor_ids}
    return [d for d in devices if d not in actor] or devices


def single_device() -> Topology:
    """The default: everything on the first local device."""
    device = np.array(jax.local_devices()[:1])
    return Topology(Mesh(device, (DATA,)), Mesh(device, (DATA,)))
