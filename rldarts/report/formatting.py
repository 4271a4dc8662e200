"""Formatting shared by the report's sections: numbers, step counts, file-name slugs,
grouping runs, and the train / test figure panels."""

from __future__ import annotations

import itertools
import re

import numpy as np
from matplotlib.figure import Figure

from rldarts.env import families
from rldarts.model import visualize
from rldarts.report.report_runs import KEYS


def env_family(game: str):
    """The family of a run's ``env_name``; None for a name no family owns (an old run)."""
    try:
        return families.family(game)
    except ValueError:
        return None


def frames_per_step(game: str) -> int:
    """Env frames per agent step of `game` (DM-Control's action repeat; 1 elsewhere)."""
    fam = env_family(game)
    return fam.frames_per_step(game) if fam else 1


def has_levels(game: str) -> bool:
    """Whether `game` has Procgen's train / test level split (unknown names: assumed)."""
    fam = env_family(game)
    return fam.has_levels if fam else True


def x_axis(game: str) -> tuple[int, str]:
    """(multiplier of env_steps, axis label) for `game`'s curves: env frames where an
    agent step repeats its action (DM-Control), else env steps."""
    k = frames_per_step(game)
    return (k, f"env frames (action repeat {k})") if k > 1 else (1, "env steps")


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
        ax.set(title=f"{game}: {_panel_title(game, key)}", xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    visualize.save_figure(fig, path, dpi=90)  # the package's atomic PNG writer


def _panel_title(game: str, key: str) -> str:
    split = key.split("_")[-1]
    if has_levels(game.split(" ")[0]):
        return f"{split} levels"
    # No level split (MinAtar, DM-Control): training episodes vs evaluation episodes.
    return "training episodes" if split == "train" else "evaluation episodes"
