"""Dependency scheduling shared by the engines, and the end-of-sweep table.

``schedule`` walks the runs in plan order and hands each one to the engine as soon as
the run it waits for (``Run.after``, its search) has settled: dependents are submitted
when their search's task has finished, never by polling the filesystem or sleeping.
An engine is any object with
  capacity            the most runs in flight (1: one after another; None: unbounded,
                      the engine queues them by resources);
  submit(run) -> h    starts a run (or queues it), returns a handle;
  wait(handles) -> (h, Result)   blocks until one of the handles settles.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from launch.plan import Run, is_finished

DONE, FAILED, SKIPPED = "done", "failed", "skipped"


@dataclasses.dataclass
class Result:
    run: Run
    state: str  # done | failed | skipped
    wall_s: float | None = None  # first attempt's start to the end of the last one
    attempts: int = 0
    note: str = ""
    finished: bool = False  # the run's budget is reached (done now, or earlier)
    deterministic: bool = False  # failed on a refusal: not retried, it would fail again

    @property
    def status(self) -> str:
        return self.state + (" (not retried: deterministic)" if self.deterministic else "")


def _prepare_none(run: Run) -> None:
    return None


def schedule(
    runs: list[Run],
    engine,
    log: Callable[[str], None] = print,
    prepare: Callable[[Run], None] = _prepare_none,
) -> list[Result]:
    """Runs everything the engine can, respecting dependencies; one Result per run, in
    plan order. ``prepare(run)`` writes what a run needs right before it is submitted
    (a milestone's genotype); a ValueError from it fails that run with its message."""
    pending, running, results = list(runs), {}, {}
    while pending or running:
        unsettled = {r.workdir for r in pending} | {r.workdir for r in running.values()}
        for run in list(pending):
            if engine.capacity is not None and len(running) >= engine.capacity:
                break
            if run.after in unsettled:
                continue  # its search has not settled yet
            pending.remove(run)
            outcome = _before_submit(run, results.get(run.after), prepare)
            if outcome is not None:
                results[run.workdir] = outcome
                log(f"# {outcome.state} {run.title}: {outcome.note}")
                continue
            log(f"# start {run.title}")
            log(run.command)
            running[engine.submit(run)] = run
        if running:
            handle, result = engine.wait(list(running))
            run = running.pop(handle)
            results[run.workdir] = result
            log(
                f"# {result.status} {run.title} ({_wall(result.wall_s)}, "
                f"{result.attempts} attempt{'s' * (result.attempts != 1)})"
                + (f": {result.note}" if result.note else "")
            )
    return [results[r.workdir] for r in runs]


def _before_submit(run: Run, dependency: Result | None, prepare) -> Result | None:
    """A Result when the run must not start (finished, blocked, unpreparable), else None."""
    if is_finished(run.workdir, run.total_env_steps):
        return Result(
            run,
            SKIPPED,
            note=f"finished earlier ({run.total_env_steps:,} env steps)",
            finished=True,
        )
    if dependency is not None and not dependency.finished:
        return Result(
            run,
            SKIPPED,
            note=f"its {dependency.run.kind} {dependency.run.workdir} is {dependency.state}",
        )
    try:
        prepare(run)
    except ValueError as e:
        return Result(run, FAILED, note=str(e))
    if run.genotype and not os.path.exists(run.genotype):
        return Result(
            run,
            SKIPPED,
            note=f"no genotype at {run.genotype}"
            + (" (did the search run?)" if run.kind == "retrain" else ""),
        )
    return None


def _wall(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:,.1f} s"


def table(results: list[Result], root: str) -> str:
    """Markdown table: each run's state, attempts, wall time and workdir (under root)."""
    root = os.path.abspath(root)
    lines = [
        f"Runs under {root} (wall time: from the start of a run's first attempt in "
        "this sweep to its end, retries included):",
        "",
        "| run | state | attempts | wall time | workdir | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.run.title} | {r.status} | {r.attempts} | {_wall(r.wall_s)} | "
            f"{os.path.relpath(r.run.workdir, root)} | {r.note} |"
        )
    counts = {s: sum(r.state == s for r in results) for s in (DONE, SKIPPED, FAILED)}
    return "\n".join(lines + ["", ", ".join(f"{n} {s}" for s, n in counts.items())])
