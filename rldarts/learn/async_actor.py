"""The asynchronous actor (Sebulba, Podracer; Cleanba): acting overlaps learning.

One actor thread steps EnvPool and runs the policy (on ``parallel.actor_devices``)
while the learner trains on the data it collected before. The hand-off is a queue of
one item: while the learner runs update ``i`` (params ``p_i`` -> ``p_{i+1}``), the actor
collects the next batch of experience with ``p_i``, the params the learner had when the
update started. Update ``i + 1`` then learns, from ``p_{i+1}``, on data of ``p_i``: the
actor is exactly one update behind (the ``policy_lag`` metric), never more. PPO's
importance ratio uses the behaviour log-probabilities recorded while acting, so the lag
is corrected the way PPO corrects any other policy change within an update.

Why "exactly" and not "at most": the actor is handed the params with each request
instead of reading whatever the learner last published, so which params act on which
step never depends on thread timing. Same seed, same config -> same numbers, as in the
synchronous mode. At a segment boundary (a checkpoint; ``Pipeline.next(...,
prefetch=None)``) nothing is prefetched: the actor and its envs are idle when the
checkpoint is written, and the first batch of the next segment is collected with the
current params (lag 0). A run resumed from a checkpoint therefore does exactly what the
uninterrupted run did (tests/test_async_actor.py).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable


class Pipeline:
    """``collect(*args) -> data`` run one request ahead on an actor thread."""

    def __init__(self, collect: Callable):
        self._collect = collect
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rldarts-actor"
        )
        self._pending: concurrent.futures.Future | None = None

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def next(self, args: tuple, prefetch: tuple | None):
        """The data for this update, and whether it was collected one update behind.

        ``args``: the ``collect`` arguments for this update (used only when nothing
        was prefetched: then it runs now, on this thread, with lag 0). ``prefetch``:
        the arguments of the next update's collection, started on the actor thread
        before returning (None at a segment boundary or at the end of the run).
        Returns ``(data, lag)``."""
        if self._pending is not None:
            data, lag = self._pending.result(), 1
        else:
            data, lag = self._collect(*args), 0
        self._pending = (
            None if prefetch is None else self._executor.submit(self._collect, *prefetch)
        )
        return data, lag

    def drain(self) -> None:
        """Waits for a pending collection and drops it (the envs are then idle)."""
        if self._pending is not None:
            try:
                self._pending.result()
            except Exception:  # the learner's own error is the one to report
                pass
            self._pending = None

    def close(self) -> None:
        self.drain()
        self._executor.shutdown(wait=True)
