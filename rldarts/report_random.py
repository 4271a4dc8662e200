"""Report section 6, DARTS vs random search: best-so-far final return against the total
env steps each method spent (search + retrains for DARTS, retrains for random search).
"""

from __future__ import annotations

import os

import numpy as np

from rldarts import analysis
from rldarts import report as rep


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
    same = lambda a, b: a is not None and b is not None and a.to_json() == b.to_json()
    for (game, agent), rs in rep._group(randoms, lambda r: (r.game, r.agent)).items():
        darts = sorted(
            (r for r in runs if r.method == "darts cell" and r.game == game and r.agent == agent),
            key=lambda r: (r.seed, r.name),
        )
        rs = sorted(rs, key=lambda r: (r.sample_index, r.seed, r.name))
        spent, counted, dpts, notes = 0, set(), [], []
        for r in darts:  # its search: the folder of its genotype path, else the same genotype
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
                notes.append(
                    f"{r.name}: its search run is not among --runs; search steps not counted"
                )
            spent += sum(s.reached for s in found if s.path not in counted) + r.reached
            counted.update(s.path for s in found)
            dpts.append(spent)
        methods = (
            ("DARTS", darts, dpts),
            ("random search", rs, np.cumsum([r.reached for r in rs]).tolist()),
        )
        best = {
            (label, k): analysis.best_so_far(
                [(x, rep.final_return(r, k)) for x, r in zip(xs, group)]
            )
            for label, group, xs in methods
            for k in rep.KEYS
        }

        def draw(ax, key, methods=methods, best=best):
            for c, (label, _, _) in enumerate(methods):
                if best[label, key][0].size:
                    ax.step(*best[label, key], where="post", color=f"C{c}", marker="o", label=label)

        png = f"darts_vs_random_{rep._slug(game)}_{rep._slug(agent)}.png"
        rep._panels(
            os.path.join(out_dir, png),
            f"{game} ({agent})",
            "total env steps spent",
            "best-so-far final return",
            draw,
        )
        out += [
            f"### {game} ({agent})",
            "",
            "| method | runs | steps spent | best final train return | best final test return |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {label} | {len(group)} | {rep._steps(xs[-1] if xs else 0)} | "
            + " | ".join(
                rep._fmt(best[label, k][1][-1] if xs else float("nan"), 2) for k in rep.KEYS
            )
            + " |"
            for label, group, xs in methods
        ]
        if not darts:
            notes.append("no darts-cell runs for this game and agent: random search only")
        out += (
            [""] + [f"- {n}" for n in notes] + ["", f"![DARTS vs random search {game}]({png})", ""]
        )
    return out
