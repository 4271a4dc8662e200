"""Procgen normalisation constants and published PPO baselines (package data).

From the Procgen paper's easy-mode table (Cobbe et al. 2020); jumper and leaper use
[3, 10] there (the train-procgen code uses jumper [1, 10], leaper [1.5, 10]). Published
scores: OpenAI PPO + IMPALA-CNN, 25M steps, 200 training levels, 3 seeds.
"""

from __future__ import annotations

import csv
import functools
import io
from importlib import resources

CONSTANT_TABLE = "Procgen paper, easy mode (jumper, leaper: [3, 10])"


@functools.lru_cache(maxsize=1)
def load() -> dict[str, dict[str, float]]:
    text = resources.files("rldarts").joinpath("data/procgen_scores.csv").read_text()
    rows = csv.DictReader(io.StringIO(text))
    return {r["game"]: {k: float(v) for k, v in r.items() if k != "game"} for r in rows}


def max_return(game: str) -> float:
    """R_max of the easy-mode table: the DQN reward scale of the official code."""
    table = load()
    if game not in table:
        raise ValueError(f"no Procgen constants for {game!r}; games: {', '.join(table)}")
    return table[game]["rmax_easy"]


def normalized_score(game: str, episode_return: float) -> float:
    """(R - Rmin) / (Rmax - Rmin) with the easy-mode constants."""
    c = load()[game]
    return (episode_return - c["rmin_easy"]) / (c["rmax_easy"] - c["rmin_easy"])
