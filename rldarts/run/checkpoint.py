"""Checkpointing of learner state (orbax) plus JSON host state, with a config fingerprint.

Each step directory `directory/<step>/` holds two orbax items written in one atomic step
(orbax writes `<step>.orbax-checkpoint-tmp-*` and renames it when complete):
  state/  the device pytree (params, optimiser state, alphas, ...)
  host/   JSON: {"host_state": ..., "state_leaves": [[path, shape, dtype], ...]}
A step counts as complete only when both items and orbax's step metadata exist, so a crash
during a save leaves the previous checkpoint as the latest usable one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from rldarts.common.files import atomic_write_json
from rldarts.run import run_lifecycle

FINGERPRINT_FILE = "fingerprint.json"
_STEP_DIR = re.compile(r"^\d+$")
_TMP_DIR = re.compile(r"\.orbax-checkpoint-tmp")
_MISSING = "<missing>"


class _QuietOrbax(logging.Filter):
    """Drops orbax's INFO chatter (it logs every save/restore); keeps its warnings and errors.
    A filter, not a level, so it survives absl.app setting the absl logger's verbosity."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


if not any(isinstance(f, _QuietOrbax) for f in logging.getLogger("absl").filters):
    logging.getLogger("absl").addFilter(_QuietOrbax())


class CheckpointMismatchError(ValueError):
    """The checkpoint on disk does not match the current config or state structure."""


def _normalise(obj: Any) -> Any:
    """JSON round trip: tuples become lists, keys become strings, so comparisons are stable."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def fingerprint_diff(stored: dict, current: dict) -> list[str]:
    """Human-readable differences between two fingerprints (nested keys dotted)."""
    a, b = _flatten(_normalise(stored)), _flatten(_normalise(current))
    diffs = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if va != vb:
            diffs.append(f"{key}: {va!r} (checkpoint) vs {vb!r} (now)")
    return diffs


def _leaf_manifest(tree: Any) -> list[list]:
    """[keypath, shape, dtype] for every leaf, used to validate a restore template."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        shape = leaf.shape if hasattr(leaf, "shape") else np.shape(leaf)
        out.append([jax.tree_util.keystr(path), [int(n) for n in shape], str(np.dtype(dtype))])
    return out


def _abstract(leaf: Any) -> Any:
    """Restore target for one template leaf: jax arrays keep their sharding, numpy stays numpy."""
    if isinstance(leaf, jax.ShapeDtypeStruct):
        if leaf.sharding is None:
            return jax.ShapeDtypeStruct(
                leaf.shape, leaf.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])
            )
        return leaf
    if isinstance(leaf, jax.Array):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
    return np.asarray(leaf)


def stored_fingerprint(directory) -> dict | None:
    path = os.path.join(os.fspath(directory), FINGERPRINT_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_fingerprint(directory, fingerprint: dict) -> None:
    """Raises CheckpointMismatchError if ``directory`` holds checkpoints of a different
    config. Reads only: a run checks it before it takes its workdir, so a refused
    resume changes nothing there."""
    stored = stored_fingerprint(directory)
    if stored is None:
        return
    diffs = fingerprint_diff(stored, _normalise(fingerprint))
    if diffs:
        raise CheckpointMismatchError(
            f"checkpoint in {os.path.abspath(os.fspath(directory))} was made with a "
            "different config: " + "; ".join(diffs)
        )


class Checkpointer:
    """Keeps the last `max_to_keep` checkpoints of (state pytree, host_state dict) in
    `directory`."""

    def __init__(self, directory, fingerprint: dict, max_to_keep: int = 2):
        self.directory = os.path.abspath(os.fspath(directory))
        self.fingerprint = _normalise(fingerprint)
        os.makedirs(self.directory, exist_ok=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "host")
        )

    # ----------------------------------------------------------------------------- queries
    def _is_complete(self, step: int) -> bool:
        d = os.path.join(self.directory, str(step))
        return all(
            os.path.exists(os.path.join(d, p))
            for p in ("_CHECKPOINT_METADATA", "state/_METADATA", "host/metadata")
        )

    def all_steps(self) -> list[int]:
        """Complete checkpoint steps on disk, ascending."""
        if not os.path.isdir(self.directory):
            return []
        steps = [int(n) for n in os.listdir(self.directory) if _STEP_DIR.match(n)]
        return sorted(s for s in steps if self._is_complete(s))

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def stored_fingerprint(self) -> dict | None:
        return stored_fingerprint(self.directory)

    def check_fingerprint(self) -> None:
        """Raises CheckpointMismatchError if the directory was made with a different config."""
        check_fingerprint(self.directory, self.fingerprint)

    # ----------------------------------------------------------------------------- save
    def _remove_debris(self) -> None:
        """Deletes leftovers of interrupted saves (only the writer does this, never a reader).
        Never while another live attempt holds the workdir (run_lifecycle's lock): its
        in-flight save looks like debris."""
        if run_lifecycle.locked_by_another(os.path.dirname(self.directory)):
            return
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if not os.path.isdir(path):
                continue
            if _TMP_DIR.search(name) or (
                _STEP_DIR.match(name) and not self._is_complete(int(name))
            ):
                shutil.rmtree(path, ignore_errors=True)

    def save(self, step: int, state: Any, host_state: dict) -> bool:
        """Saves synchronously; returns False (and writes nothing) if `step` is already saved.

        Multi-host: every process calls this with the same global ``state`` (orbax
        writes each process's shards and process 0 the metadata) and the same
        ``host_state`` (the driver gathers the processes' host states into it)."""
        step = int(step)
        primary = jax.process_index() == 0  # multi-host: one writer of our own files
        if self.stored_fingerprint() is None:
            if primary:
                atomic_write_json(os.path.join(self.directory, FINGERPRINT_FILE), self.fingerprint)
        else:
            self.check_fingerprint()
        if self._is_complete(step):
            return False
        if primary:
            self._remove_debris()
        self._manager.reload()
        host = {"host_state": _normalise(host_state), "state_leaves": _leaf_manifest(state)}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), host=ocp.args.JsonSave(host)
            ),
            force=True,
        )
        self._manager.wait_until_finished()
        return True

    # ----------------------------------------------------------------------------- restore
    def _check_structure(self, step: int, stored: list, template: Any) -> None:
        stored_map = {p: (tuple(s), d) for p, s, d in stored}
        now_map = {p: (tuple(s), d) for p, s, d in _leaf_manifest(template)}
        diffs = []
        for path in [p for p, _, _ in stored] + [p for p in now_map if p not in stored_map]:
            a, b = stored_map.get(path), now_map.get(path)
            if a is None:
                diffs.append(f"{path or '<root>'} missing in checkpoint")
            elif b is None:
                diffs.append(f"{path or '<root>'} missing in current state")
            elif a != b:
                diffs.append(f"{path}: {a[1]}{list(a[0])} (checkpoint) vs {b[1]}{list(b[0])} (now)")
        if diffs:
            shown = "; ".join(diffs[:5]) + (
                f"; ... {len(diffs) - 5} more" if len(diffs) > 5 else ""
            )
            raise CheckpointMismatchError(
                f"checkpoint {step} in {self.directory} does not match the current state "
                f"structure ({len(diffs)} difference(s)): {shown}"
            )

    def restore(self, template_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores (state, host_state); state gets the tree structure of `template_state`."""
        self.check_fingerprint()
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
        elif not self._is_complete(int(step)):
            raise FileNotFoundError(f"no complete checkpoint {step} in {self.directory}")
        step = int(step)
        self._manager.reload()
        host = self._manager.restore(
            step, args=ocp.args.Composite(host=ocp.args.JsonRestore())
        ).host
        self._check_structure(step, host["state_leaves"], template_state)
        target = jax.tree.map(_abstract, template_state)
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
            )
        except ValueError as e:  # anything the manifest check did not catch
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointMismatchError(
                f"checkpoint {step} in {self.directory} could not be restored into the current "
                f"state: {first}"
            ) from None
        return restored.state, host["host_state"]

    def close(self) -> None:
        self._manager.close()
