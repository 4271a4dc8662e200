"""Cells along the search: the genotype a search had discretized at a fraction of its budget.

Every search appends one JSON line per genotype write to ``genotype_history.jsonl``
(``{"env_steps": n, "genotype": {...}}``, rldarts/run/experiment.py). The milestone at
fraction f of a budget B is the last record with env_steps <= f x B; it is written as a
genotype file in genotype.json's exact format, with ``milestone.json`` beside it (what
it was cut from), both atomically, so a retrain of it reads like any other genotype.
"""

from __future__ import annotations

import json
import os

from launch.plan import HISTORY_FILE, MILESTONE_INFO, Run


def read_history(path: str) -> list[dict]:
    """The records of a genotype_history.jsonl; a torn last line (killed writer) is dropped."""
    try:
        with open(path) as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
    except OSError as e:
        raise ValueError(f"cannot read genotype history {path}: {e.strerror}") from None
    records = []
    for k, line in enumerate(lines):
        try:
            rec = json.loads(line)
            records.append({"env_steps": int(rec["env_steps"]), "genotype": rec["genotype"]})
        except (ValueError, KeyError, TypeError):
            if k == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {k + 1} is not a genotype record") from None
    return records


def select(records: list[dict], fraction: float, budget: int) -> dict:
    """The last record (file order) with env_steps <= fraction x budget."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"milestone {fraction} is outside (0, 1]")
    target = fraction * budget
    found = [r for r in records if r["env_steps"] <= target * (1 + 1e-12)]
    if not found:
        first = min((r["env_steps"] for r in records), default=None)
        raise ValueError(
            f"no genotype at or before {target:,.0f} env steps ({fraction:g} of "
            f"{budget:,}); the first one was written at "
            f"{'never' if first is None else f'{first:,}'} env steps"
        )
    return found[-1]


def write_milestone(run: Run) -> str:
    """Writes the milestone genotype of `run` (kind 'milestone') from its search's history;
    returns the genotype path. Raises ValueError naming the problem."""
    from rldarts.common.files import atomic_write_json, atomic_write_text
    from rldarts.model.genotypes import NetworkGenotype  # validates the record; imports JAX

    history = os.path.join(run.after, HISTORY_FILE)
    rec = select(read_history(history), run.milestone, run.search_budget)
    text = NetworkGenotype.from_json(json.dumps(rec["genotype"])).to_json()
    atomic_write_text(run.genotype, text)
    atomic_write_json(
        os.path.join(os.path.dirname(run.genotype), MILESTONE_INFO),
        {
            "fraction": run.milestone,
            "env_steps": rec["env_steps"],
            "search_total_env_steps": run.search_budget,
            "search_workdir": run.after,
            "genotype": json.loads(text),
        },
    )
    return run.genotype
