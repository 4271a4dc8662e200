"""Formatting shared by the report's sections: numbers, step counts, file-name slugs,
grouping runs, and the train / test figure panels."""

from __future__ import annotations

import itertools
import re

import numpy as np
from matplotlib.figure import Figure

from rldarts.model import visualize
from rldarts.report.report_runs import KEYS


def fmt(v, digits=3) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def steps(n) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{int(n):,}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def group(runs, key) -> dict:
    return {k: list(g) for k, g in itertools.groupby(sorted(runs, key=key), key)}


def panels(path: str, game: str, xlabel: str, ylabel: str, draw) -> None:
    """Train / test side by side (``draw(ax, key)`` per metric key), written atomically."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    for ax, key in zip(fig.subplots(1, 2), KEYS):
        draw(ax, key)
        ax.set(title=f"{game}: {key.split('_')[-1]} levels", xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    visualize.save_figure(fig, path, dpi=90)  # the package's atomic PNG writer
