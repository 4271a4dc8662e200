"""The architecture record a search keeps in its workdir: ``genotype.json`` (discretized
from the current alphas, with its provenance) and its history, the cell diagrams (PNG and
DOT, discrete and supernet), the alpha-evolution plot (and, for PC-DARTS, the
edge-weight plot). The histories are JSON-lines files cut back to the resume point, so a
resumed search rewrites the same record.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from rldarts.common.files import atomic_write_text
from rldarts.model import visualize
from rldarts.model.genotypes import EDGE_WEIGHTS, NetworkGenotype, discretize
from rldarts.run import config_checks
from rldarts.run.setup import Setup


class History:
    """Append-only JSON-lines file, truncated to a resume point."""

    def __init__(self, path: str, resume_env_steps: int | None):
        self.path = path
        lines = []
        if resume_env_steps is not None and os.path.exists(path):
            with open(path) as f:
                lines = [
                    ln for ln in f if ln.strip() and json.loads(ln)["env_steps"] <= resume_env_steps
                ]
        atomic_write_text(path, "".join(lines))

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        with open(self.path) as f:
            return [json.loads(ln) for ln in f if ln.strip()]


def write_architecture(
    workdir: str,
    s: Setup,
    alphas: dict,
    env_steps: int,
    inv_temp: float,
    genotype_history: History | None = None,
    alpha_history: History | None = None,
) -> NetworkGenotype:
    """genotype.json (+ history), cell diagrams (PNG + DOT), alpha-evolution plot."""
    np_alphas = jax.tree.map(np.asarray, alphas)
    genotype = discretize(np_alphas, s.ops, s.config.arch.discretize_k, inv_temp)
    genotype = genotype.with_provenance(config_checks.genotype_provenance(s.config))
    atomic_write_text(os.path.join(workdir, "genotype.json"), genotype.to_json())
    if genotype_history is not None:
        genotype_history.append(
            {"env_steps": env_steps, "genotype": json.loads(genotype.to_json())}
        )
    cells_dir = os.path.join(workdir, "cells")
    os.makedirs(cells_dir, exist_ok=True)
    for cell_type, cell in genotype.cells.items():
        title = f"{cell_type} cell @ {env_steps:,} steps"
        visualize.draw_genotype(cell, os.path.join(cells_dir, f"{cell_type}.png"), title)
        atomic_write_text(
            os.path.join(cells_dir, f"{cell_type}.dot"), visualize.genotype_to_dot(cell, title)
        )
        visualize.draw_alphas(
            np_alphas[cell_type],
            s.ops,
            os.path.join(cells_dir, f"{cell_type}_alphas.png"),
            inv_temp,
            f"{cell_type} supernet @ {env_steps:,} steps",
        )
        atomic_write_text(
            os.path.join(cells_dir, f"{cell_type}_alphas.dot"),
            visualize.alphas_to_dot(np_alphas[cell_type], s.ops, inv_temp),
        )
    if alpha_history is not None:
        records = [(r["env_steps"], r["alphas"]) for r in alpha_history.read()]
        if records:
            visualize.plot_alpha_history(
                records, s.ops, os.path.join(workdir, "alpha_evolution.png"), inv_temp
            )
            if EDGE_WEIGHTS in alphas:
                visualize.plot_edge_weight_history(
                    records, os.path.join(workdir, "edge_weight_evolution.png")
                )
    return genotype
