"""Report section 6, DARTS vs random search: best-so-far final return against the total
env steps each method spent (search + retrains for DARTS, retrains for random search).
"""

from __future__ import annotations

import os

import numpy as np

from rldarts.report import analysis
from rldarts.report import formatting as fm
from rldarts.report.report_runs import KEYS, final_return


def section(runs, out_dir) -> list[str]:
    randoms = [r for r in runs if r.method == "random cell"]
    if not randoms:
        return ["No random-search runs found (no workdir with random_search.json)."]
    out = [
        "Best-so-far final return (mean of the last evaluations) against total env "
        "steps spent. DARTS: search steps (each search counted once) + retrain steps "
        "of its cells, runs ordered by seed; random search: retrain steps of the "
        "samples, cumulated in sample_index order.",
        "",
    ]
    searches = [r for r in runs if r.method == "search"]
    for (game, agent), rs in fm.group(randoms, lambda r: (r.game, r.agent)).items():
        darts = sorted(
            (r for r in runs if r.method == "darts cell" and r.game == game and r.agent == agent),
            key=lambda r: (r.seed, r.name),
        )
        rs = sorted(rs, key=lambda r: (r.sample_index, r.seed, r.name))
        out += _game_section(game, agent, darts, rs, searches, out_dir)
    return out


def _darts_costs(darts, searches) -> tuple[list[int], list[str]]:
    """Cumulated env steps after each DARTS retrain: its search (counted once, found by
    the folder of its genotype path, else by the same genotype) + the retrain."""
    same = lambda a, b: a is not None and b is not None and a.to_json() == b.to_json()
    spent, counted, costs, notes = 0, set(), [], []
    for r in darts:
        g = os.path.join(r.path, str(r.config.get("genotype")))  # absolute paths win
        found = (
            [
                s
                for s in searches
                if os.path.realpath(os.path.dirname(g)) == os.path.realpath(s.path)
            ]
            or [s for s in searches if same(s.genotype, r.genotype)]
        )[:1]
        if not found:
            notes.append(f"{r.name}: its search run is not among --runs; search steps not counted")
        spent += sum(s.reached for s in found if s.path not in counted) + r.reached
        counted.update(s.path for s in found)
        costs.append(spent)
    return costs, notes


def _game_section(game, agent, darts, rs, searches, out_dir) -> list[str]:
    dpts, notes = _darts_costs(darts, searches)
    methods = (
        ("DARTS", darts, dpts),
        ("random search", rs, np.cumsum([r.reached for r in rs]).tolist()),
    )
    best = {
        (label, k): analysis.best_so_far([(x, final_return(r, k)) for x, r in zip(xs, group)])
        for label, group, xs in methods
        for k in KEYS
    }

    def draw(ax, key):
        for c, (label, _, _) in enumerate(methods):
            if best[label, key][0].size:
                ax.step(*best[label, key], where="post", color=f"C{c}", marker="o", label=label)

    png = f"darts_vs_random_{fm.slug(game)}_{fm.slug(agent)}.png"
    fm.panels(
        os.path.join(out_dir, png),
        f"{game} ({agent})",
        "total env steps spent",
        "best-so-far final return",
        draw,
    )
    out = [
        f"### {game} ({agent})",
        "",
        "| method | runs | steps spent | best final train return | best final test return |",
        "|---|---|---|---|---|",
    ]
    out += [
        f"| {label} | {len(group)} | {fm.steps(xs[-1] if xs else 0)} | "
        + " | ".join(fm.fmt(best[label, k][1][-1] if xs else float("nan"), 2) for k in KEYS)
        + " |"
        for label, group, xs in methods
    ]
    if not darts:
        notes.append("no darts-cell runs for this game and agent: random search only")
    return (
        out
        + [""]
        + [f"- {n}" for n in notes]
        + ["", f"![DARTS vs random search {game}]({png})", ""]
    )
