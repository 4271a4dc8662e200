"""Prioritized n-step replay for vectorised envs, pure NumPy on the host.

Layout: a time-major ring (rows, N, *obs_shape) with rows = capacity // N. Row r holds the
step whose global index s satisfies s % rows == r. Each frame is stored exactly once: the
n-step bootstrap observation of transition (s, e) is the ring entry at step s + n, read at
sample time, and the n-step return is also recomputed at sample time from the stored
per-step rewards and dones (B * n gathers per batch, far cheaper than storing it).

Validity (why no sample mixes eras): a transition (s, e) is given a non-zero priority only
once its window is complete, i.e. step s + n was written or a done occurred at some step
s + k - 1 <= latest step. Its window rows s..s+n are overwritten only after row s itself
(rows > n is enforced), and writing row s again zeroes its priorities first. So while a
leaf is positive every row its window reads holds the same era. Steps after an in-window
done may hold stale data but are masked out of the return and never read as next_obs.

Steady state: the newest n rows are incomplete, so size is about (rows - n) * N.

Truncation (``add(..., truncated=)``, SAC on DM-Control, whose episodes end only by the
time limit): a truncated episode end is not terminal. The windows that reach it are cut
there and bootstrap from the end step's stored frame (the last observation an action was
taken on: return of the rewards before it, discount gamma^k); the end step's own
transition has no stored next frame (same-step autoreset) and is never activated.
Without ``truncated`` every done is terminal (DQN). Actions may be vectors
(``action_shape``, ``action_dtype``: continuous control).
"""

from __future__ import annotations

import os

import numpy as np

from rldarts.common.files import atomic_write

_CONFIG_KEYS = (
    "capacity",
    "num_envs",
    "obs_shape",
    "obs_dtype",
    "n_step",
    "gamma",
    "priority_exponent",
    "action_shape",
    "action_dtype",
)
_DEFAULTS = {"action_shape": (), "action_dtype": np.dtype(np.int32).str}  # older files


def _tree_leaves(num: int) -> int:
    return 1 << max(0, int(num - 1).bit_length())


class PrioritizedReplay:
    """Proportional prioritized replay (Schaul et al. 2016) with n-step returns.

    Indices returned by `sample` are flat leaf ids row * num_envs + env; pass them back to
    `update_priorities`.
    """

    def __init__(
        self,
        capacity,
        num_envs,
        obs_shape,
        obs_dtype=np.uint8,
        n_step=7,
        gamma=0.99,
        priority_exponent=0.8,
        importance_exponent=0.2,
        *,
        priority_epsilon=1e-6,
        action_shape=(),
        action_dtype=np.int32,
    ):
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if int(n_step) != n_step or n_step < 1:
            raise ValueError(f"n_step must be a positive integer, got {n_step!r}")
        if int(capacity) != capacity or capacity // num_envs < n_step + 1:
            raise ValueError(
                f"capacity={capacity!r} must give capacity // num_envs > "
                f"n_step={n_step} rows (num_envs={num_envs})"
            )
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        if not priority_exponent >= 0.0:
            raise ValueError(f"priority_exponent must be >= 0, got {priority_exponent!r}")
        if not importance_exponent >= 0.0:
            raise ValueError(f"importance_exponent must be >= 0, got {importance_exponent!r}")
        if not priority_epsilon > 0.0:
            raise ValueError(f"priority_epsilon must be > 0, got {priority_epsilon!r}")
        self.num_envs = int(num_envs)
        self.rows = int(capacity) // self.num_envs
        self.capacity = self.rows * self.num_envs  # rounded down to whole rows
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.priority_exponent = float(priority_exponent)
        # Not part of the checked config: callers often anneal beta, so they may set it.
        self.importance_exponent = float(importance_exponent)
        self.priority_epsilon = float(priority_epsilon)
        self.action_shape = tuple(int(d) for d in action_shape)
        self.action_dtype = np.dtype(action_dtype)

        self._obs = np.zeros((self.rows, self.num_envs) + self.obs_shape, self.obs_dtype)
        self._actions = np.zeros((self.rows, self.num_envs, *self.action_shape), self.action_dtype)
        self._rewards = np.zeros((self.rows, self.num_envs), np.float32)
        self._dones = np.zeros((self.rows, self.num_envs), bool)
        self._truncs = np.zeros((self.rows, self.num_envs), bool)  # dones that truncate
        # Sum tree: node i has children 2i, 2i+1; leaves at [L, 2L). float64 so that the
        # root of ~1e6 leaves keeps enough precision for stratified descent.
        self._leaves = _tree_leaves(self.capacity)
        self._tree = np.zeros(2 * self._leaves, np.float64)
        # Per env, the newest step whose transition was already activated (-1: none).
        self._activated = np.full(self.num_envs, -1, np.int64)
        self._num_steps = 0  # calls to add() so far
        self._size = 0  # leaves with positive priority
        self._max_priority = 1.0  # raw priority (before alpha) given to new transitions

    # ------------------------------------------------------------------ memory
    @staticmethod
    def estimate_bytes(
        capacity, obs_shape, obs_dtype=np.uint8, num_envs=1, action_shape=(), action_dtype=np.int32
    ) -> int:
        """Bytes the constructor will allocate, so callers can refuse before allocating."""
        rows = int(capacity) // int(num_envs)
        cap = rows * int(num_envs)
        frame = int(np.prod(obs_shape, dtype=np.int64)) * np.dtype(obs_dtype).itemsize
        action = int(np.prod(action_shape, dtype=np.int64)) * np.dtype(action_dtype).itemsize
        per_step = frame + action + 4 + 1 + 1  # obs, action, float32 reward, done, truncated
        return cap * per_step + 2 * _tree_leaves(cap) * 8 + int(num_envs) * 8

    def memory_bytes(self) -> int:
        return sum(
            a.nbytes
            for a in (
                self._obs,
                self._actions,
                self._rewards,
                self._dones,
                self._truncs,
                self._tree,
                self._activated,
            )
        )

    @property
    def bytes_per_transition(self) -> float:
        return self.memory_bytes() / self.capacity

    @property
    def size(self) -> int:
        return self._size

    @property
    def num_added(self) -> int:
        return self._num_steps * self.num_envs

    # ------------------------------------------------------------------ sum tree
    def _set(self, leaf_ids, values):
        """Write leaf values and recompute ancestors (recomputed, not summed deltas, so no
        float drift accumulates). Duplicate parents get identical values, so fancy-index
        assignment with repeats is safe."""
        idx = np.asarray(leaf_ids, np.int64) + self._leaves
        self._tree[idx] = values
        while idx.size and idx[0] > 1:
            idx = np.unique(idx >> 1)
            self._tree[idx] = self._tree[2 * idx] + self._tree[2 * idx + 1]

    def get_priorities(self, indices) -> np.ndarray:
        """Stored leaf values p^alpha (0 = not sampleable)."""
        return self._tree[np.asarray(indices, np.int64) + self._leaves].copy()

    # ------------------------------------------------------------------ writing
    def add(self, obs, actions, rewards, dones, truncated=None):
        """One step of every env. ``truncated`` (optional, a subset of ``dones``): the
        episodes that ended by a time limit, not a terminal state (module doc)."""
        obs = np.asarray(obs)
        n = self.num_envs
        if obs.shape != (n,) + self.obs_shape:
            raise ValueError(f"obs shape {obs.shape} != {(n,) + self.obs_shape}")
        if not np.can_cast(obs.dtype, self.obs_dtype, casting="same_kind"):
            raise ValueError(f"obs dtype {obs.dtype} cannot be stored as {self.obs_dtype}")
        actions, rewards, dones = (np.asarray(x) for x in (actions, rewards, dones))
        truncated = np.zeros(n, bool) if truncated is None else np.asarray(truncated, bool)
        if actions.shape != (n, *self.action_shape):
            raise ValueError(f"actions shape {actions.shape} != {(n, *self.action_shape)}")
        for name, x in (("rewards", rewards), ("dones", dones), ("truncated", truncated)):
            if x.shape != (n,):
                raise ValueError(f"{name} shape {x.shape} != {(n,)}")
        t = self._num_steps
        r = t % self.rows
        # Invalidate the overwritten era's transitions before their frame disappears.
        row_leaves = r * n + np.arange(n)
        self._size -= int(np.count_nonzero(self._tree[row_leaves + self._leaves]))
        self._set(row_leaves, 0.0)
        self._obs[r] = obs
        self._actions[r] = actions
        self._rewards[r] = rewards
        self._dones[r] = dones.astype(bool)
        self._truncs[r] = truncated & self._dones[r]

        # Activate every transition whose window just completed: step t - n normally, and
        # on a done all not-yet-activated steps up to t (their windows end inside); on a
        # truncation only those before t (step t has no next frame).
        hi = np.where(self._dones[r], t - self._truncs[r], t - self.n_step)
        # The second bound is defensive: with rows > n, activated + 1 >= t - n already.
        lo = np.maximum(self._activated + 1, t - self.rows + 1)
        steps = lo[:, None] + np.arange(self.n_step + 1)[None, :]  # at most n+1 per env
        mask = (steps <= hi[:, None]) & (steps >= 0)
        env_ids = np.broadcast_to(np.arange(n)[:, None], steps.shape)
        new = (steps[mask] % self.rows) * n + env_ids[mask]
        if new.size:
            self._set(new, self._max_priority**self.priority_exponent)
            self._size += int(new.size)
        self._activated = np.maximum(self._activated, np.where(self._truncs[r], t, hi))
        self._num_steps = t + 1

    def close_open_windows(self):
        """Drop the transitions whose n-step window is still open: the envs are about to
        be rebuilt (a new env segment, ``rldarts.learn.actor``), so the steps that would
        complete those windows belong to other episodes. Their frames stay in the ring
        (later windows never read backwards) but they are never activated."""
        self._activated[:] = self._num_steps - 1

    def update_priorities(self, indices, priorities):
        """Set raw priorities (|TD| or loss); alpha and epsilon are applied here.

        Leaves that are no longer sampleable (overwritten since sampling) are skipped, so a
        late update never resurrects a dead transition."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        p = np.abs(np.asarray(priorities, np.float64).reshape(-1))
        if indices.shape != p.shape:
            raise ValueError(f"indices {indices.shape} and priorities {p.shape} differ")
        if not np.all(np.isfinite(p)):
            raise ValueError("priorities must be finite (NaN/inf would corrupt the sum tree)")
        if indices.size and (indices.min() < 0 or indices.max() >= self.capacity):
            raise ValueError(f"indices out of range [0, {self.capacity})")
        live = self._tree[indices + self._leaves] > 0
        if not live.any():
            return
        p = p[live] + self.priority_epsilon
        self._max_priority = max(self._max_priority, float(p.max()))
        self._set(indices[live], p**self.priority_exponent)

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, rng: np.random.Generator) -> dict:
        """Stratified proportional sample: one draw per equal segment of the total mass.

        weights = (size * P(i))^-beta divided by the max over this batch (Dopamine/Acme
        convention, not the max over the whole buffer, which would need a min-tree)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if self._size == 0:
            raise ValueError("cannot sample: no complete transitions yet")
        total = self._tree[1]
        u = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
        idx = np.ones(batch_size, np.int64)
        while idx[0] < self._leaves:
            left = self._tree[2 * idx]
            # Never step into an empty right subtree: rounding can make u >= left there.
            right = (u >= left) & (self._tree[2 * idx + 1] > 0)
            u = np.where(right, u - left, u)
            idx = 2 * idx + right
        leaf = idx - self._leaves
        probs = self._tree[idx] / total
        w = (self._size * probs) ** -self.importance_exponent
        batch = self._gather(leaf)
        batch["indices"] = leaf
        batch["weights"] = (w / w.max()).astype(np.float32)
        # The max of the size-free weight P(i)^-beta, one copy per row: multi-host
        # learners renormalise by the max over every process's rows with it
        # (``dqn.global_importance_weights``); with one process it changes nothing.
        scale = np.max(probs**-self.importance_exponent)
        batch["weight_scale"] = np.full(batch_size, scale, np.float32)
        return batch

    def _gather(self, leaf):
        row, env = leaf // self.num_envs, leaf % self.num_envs
        rows = (row[:, None] + np.arange(self.n_step)[None, :]) % self.rows
        r = self._rewards[rows, env[:, None]].astype(np.float64)
        d = self._dones[rows, env[:, None]]
        # alive[:, i] = no done among steps s..s+i-1; masks rewards (and stale data) after
        # the episode's end.
        alive = np.ones_like(d)
        alive[:, 1:] = np.cumprod(~d[:, :-1], axis=1).astype(bool)
        ret = np.sum(np.where(alive, r, 0.0) * self.gamma ** np.arange(self.n_step), axis=1)
        ended = np.any(d & alive, axis=1)
        j = np.argmax(d & alive, axis=1)  # the episode's end inside the window, if ended
        # A truncated end (j >= 1: the end step itself is never activated) bootstraps from
        # its own frame: its reward belongs to its own, dropped transition.
        cut = ended & self._truncs[rows[np.arange(len(row)), j], env]
        ret = ret - np.where(cut, r[np.arange(len(row)), j] * self.gamma**j, 0.0)
        terminal = ended & ~cut
        # Terminal transitions never bootstrap; give them the episode's last frame (always
        # in the ring and same era) instead of step s+n, which may not be written yet.
        offset = np.where(ended, j, self.n_step)
        next_row = (row + offset) % self.rows
        discount = np.where(cut, self.gamma**j, self.gamma**self.n_step)
        return {
            "obs": self._obs[row, env],
            "actions": self._actions[row, env],
            "rewards": ret.astype(np.float32),
            "discounts": np.where(terminal, 0.0, discount).astype(np.float32),
            "next_obs": self._obs[next_row, env],
        }

    # ------------------------------------------------------------------ checkpointing
    def _config(self):
        return {
            "capacity": self.capacity,
            "num_envs": self.num_envs,
            "obs_shape": self.obs_shape,
            "obs_dtype": self.obs_dtype.str,
            "n_step": self.n_step,
            "gamma": self.gamma,
            "priority_exponent": self.priority_exponent,
            "action_shape": self.action_shape,
            "action_dtype": self.action_dtype.str,
        }

    def save(self, path):
        """Atomically write the full state to one .npz (tmp file in the same dir, then
        os.replace, so a crash leaves the previous file intact)."""
        path = os.fspath(path)
        cfg = self._config()
        arrays = {f"cfg_{k}": np.asarray(v) for k, v in cfg.items()}
        arrays.update(
            obs=self._obs,
            actions=self._actions,
            rewards=self._rewards,
            dones=self._dones,
            truncs=self._truncs,
            tree=self._tree,
            activated=self._activated,
            num_steps=np.int64(self._num_steps),
            size=np.int64(self._size),
            max_priority=np.float64(self._max_priority),
        )
        atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)

    def load(self, path):
        """Restore state saved by `save`; ValueError if it was made with another config."""
        with np.load(os.fspath(path), allow_pickle=False) as z:
            mine = self._config()
            for k in _CONFIG_KEYS:
                v = z[f"cfg_{k}"] if f"cfg_{k}" in z else np.asarray(_DEFAULTS[k])
                theirs = tuple(int(x) for x in v) if k.endswith("_shape") else v.item()
                if theirs != mine[k]:
                    raise ValueError(
                        f"replay checkpoint {path}: {k}={theirs!r} but this "
                        f"buffer has {k}={mine[k]!r}"
                    )
            self._obs[...] = z["obs"]
            self._actions[...] = z["actions"]
            self._rewards[...] = z["rewards"]
            self._dones[...] = z["dones"]
            self._truncs[...] = z["truncs"] if "truncs" in z else False
            self._tree[...] = z["tree"]
            self._activated[...] = z["activated"]
            self._num_steps = int(z["num_steps"])
            self._size = int(z["size"])
            self._max_priority = float(z["max_priority"])
