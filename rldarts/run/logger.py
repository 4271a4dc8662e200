"""Metrics logging (CSV + TensorBoard) and terminal progress lines, shared by every agent.

The CSV is rewritten atomically through ``rldarts.common.files`` (the one atomic writer).
"""

from __future__ import annotations

import csv
import datetime
import io
import logging
import math
import os
from typing import Any

import numpy as np

from rldarts.common.files import atomic_write_text

METRICS_CSV = "metrics.csv"
TB_DIR = "tb"


def _not_an_optional_backend(record: logging.LogRecord) -> bool:
    # jax logs at INFO level, and only for backends it may skip ("fail quietly"), that a
    # backend could not start: every CPU-only run's "Unable to initialize backend 'tpu'".
    # A backend the user asked for (JAX_PLATFORMS) raises instead, so nothing real is lost.
    return not (
        record.levelno <= logging.INFO
        and str(record.msg).startswith("Unable to initialize backend")
    )


def quiet_library_logs() -> None:
    """Silence the INFO lines libraries print on every start of an absl binary (absl shows
    INFO): jax's note that the optional TPU backend is absent and matplotlib's font-cache
    messages. Warnings and errors still pass. Idempotent; call it before jax starts."""
    logging.getLogger("jax._src.xla_bridge").addFilter(_not_an_optional_backend)
    matplotlib_logger = logging.getLogger("matplotlib")
    if matplotlib_logger.level == logging.NOTSET:  # a level someone chose wins
        matplotlib_logger.setLevel(logging.WARNING)


def _to_cell(value: Any) -> str:
    """Formats one metric value for the CSV (shortest round-trip repr for floats)."""
    if value is None:
        return ""
    if hasattr(value, "shape") and not isinstance(value, np.generic):  # jax / numpy arrays
        value = np.asarray(value)
        if value.size != 1:
            raise ValueError(f"metric values must be scalars, got shape {value.shape}")
        value = value.reshape(())[()]
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(value)  # str(np.float32(0.1)) == '0.1'; str(float) == repr(float)
    return str(value)


def _parse_cell(cell: str) -> Any:
    if cell == "":
        return None
    try:
        return float(cell)
    except ValueError:
        return cell


def read_metrics(path) -> list[dict]:
    """Reads a metrics CSV: one dict per row, floats where parseable, None for empty cells."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


class MetricsLogger:
    """Writes `workdir/metrics.csv` (one row per `write`) and TensorBoard scalars to `workdir/tb`.

    The CSV header is the union of all keys seen so far (first-seen order); when a new key appears
    the file is rewritten atomically with the wider header. Each row is flushed immediately.
    With `resume=True` existing rows are kept, except rows with env_steps > `resume_env_steps`
    (logged after the checkpoint being resumed), and TensorBoard hides those steps as well.
    """

    def __init__(
        self,
        workdir,
        resume: bool = False,
        resume_env_steps: int | None = None,
        tensorboard: bool = True,
    ):
        self.workdir = os.fspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.path = os.path.join(self.workdir, METRICS_CSV)
        self._columns: list[str] = []
        self._rows: list[dict[str, str]] = []  # formatted cells, kept for header rewrites
        if resume and os.path.exists(self.path):
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                self._columns = list(reader.fieldnames or [])
                for row in reader:
                    if resume_env_steps is not None and _steps_of(row) > resume_env_steps:
                        continue
                    self._rows.append({k: (v or "") for k, v in row.items() if k is not None})
        self._rewrite()
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            # purge_step hides events at/after it from earlier event files (a killed run's tail).
            purge = (
                (resume_env_steps + 1 if resume_env_steps is not None else None) if resume else 0
            )
            self._tb = SummaryWriter(os.path.join(self.workdir, TB_DIR), purge_step=purge)

    def _rewrite(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._columns, restval="", lineterminator="\n")
        if self._columns:
            writer.writeheader()
            writer.writerows(self._rows)
        atomic_write_text(self.path, buf.getvalue())

    def write(self, row: dict) -> None:
        if "env_steps" not in row:
            raise KeyError("every metrics row needs an 'env_steps' entry")
        cells = {str(k): _to_cell(v) for k, v in row.items()}
        self._rows.append(cells)
        new = [k for k in cells if k not in self._columns]
        if new:
            self._columns.extend(new)
            self._file.close()
            self._rewrite()
            self._file = open(self.path, "a", newline="", encoding="utf-8")
        else:
            csv.DictWriter(
                self._file, fieldnames=self._columns, restval="", lineterminator="\n"
            ).writerow(cells)
            self._file.flush()
        if self._tb is not None:
            step = int(float(cells["env_steps"]))
            for key, cell in cells.items():
                if key == "env_steps" or cell == "":
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    continue  # non-numeric entries only go to the CSV
                if not math.isfinite(value):
                    continue  # e.g. no episode finished this iteration
                self._tb.add_scalar(key, value, global_step=step)
            self._tb.flush()

    def write_tensorboard(self, env_steps: int, scalars: dict) -> None:
        """Scalars for TensorBoard only (too many for a CSV column each, e.g. the
        per-edge op probabilities)."""
        if self._tb is None:
            return
        for key, value in scalars.items():
            self._tb.add_scalar(key, float(value), global_step=int(env_steps))
        self._tb.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _steps_of(row: dict) -> float:
    try:
        return float(row.get("env_steps") or "nan")
    except ValueError:
        return math.nan


def _hms(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    return str(datetime.timedelta(seconds=int(round(seconds))))


def format_progress(
    env_steps: int, total_env_steps: int, sps: float, episode_return: float | None, elapsed_s: float
) -> str:
    """One terminal progress line, e.g.
    `[  12.3%] steps 123,456/1,000,000 | 1,234 sps | return 5.12 | ETA 0:12:03 | elapsed 0:01:40`.
    """
    env_steps, total = int(env_steps), int(total_env_steps)
    pct = 100.0 * env_steps / total if total > 0 else 0.0
    ret = (
        "n/a"
        if episode_return is None or not math.isfinite(float(episode_return))
        else f"{float(episode_return):.2f}"
    )
    eta = (total - env_steps) / sps if sps and sps > 0 else math.nan
    return (
        f"[{pct:6.1f}%] steps {env_steps:,}/{total:,} | {int(round(sps or 0)):,} sps | "
        f"return {ret} | ETA {_hms(max(eta, 0.0))} | elapsed {_hms(elapsed_s)}"
    )
