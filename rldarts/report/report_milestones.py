"""Report section 7, cells along the search: the genotype each search had discretized at
a fraction of its budget (launch/milestones.py), retrained from scratch, against search
progress; per game and agent, then pooled over games, with the search's final retrain
(``darts cell``) and the hand-designed baseline (IMPALA, or minatar_cnn for MinAtar) as
reference lines.
"""

from __future__ import annotations

import os

import numpy as np

from rldarts.report import analysis
from rldarts.report import formatting as fm
from rldarts.report.report_runs import BASELINES, KEYS, LAST_EVALS, final_return

REFERENCES = (("DARTS final retrain", "darts cell"), ("IMPALA", "impala"))


def references(runs) -> tuple:
    """REFERENCES with the baseline the runs hold (IMPALA unless only another is there)."""
    found = sorted({r.method for r in runs if r.method in BASELINES})
    if not found or "impala" in found:
        return REFERENCES
    return (REFERENCES[0], (found[0], found[0]))


def _ci_cell(a: dict, digits: int) -> str:
    lo, hi = a["mean_ci"]
    return (
        f"{fm.fmt(a['mean'], digits)} [{fm.fmt(lo, digits)}, {fm.fmt(hi, digits)}]"
        if a["n"]
        else "n/a"
    )


def _stats(runs, game: str) -> dict:
    """key -> (aggregate of final returns, aggregate of normalised final returns)."""
    out = {}
    for key in KEYS:
        finals = [final_return(r, key) for r in runs]
        out[key] = (
            analysis.aggregate(finals),
            analysis.aggregate(analysis.normalized_scores(game, finals)),
        )
    return out


def _row(name: str, steps: str, runs, stats: dict) -> str:
    cells = [_ci_cell(stats[k][i], d) for k in reversed(KEYS) for i, d in ((0, 2), (1, 3))]
    return f"| {name} | {steps} | {len(runs)} | " + " | ".join(cells) + " |"


def _figure(path: str, title: str, points: dict, refs: dict, ylabel: str):
    """points: key -> [(fraction, aggregate)]; refs: label -> key -> aggregate. Milestone
    means with their 95% CIs as error bars; references as lines with CI bands."""

    def draw(ax, key):
        xs = [x for x, _ in points[key]]
        means = np.array([a["mean"] for _, a in points[key]], dtype=float)
        cis = np.array([a["mean_ci"] for _, a in points[key]], dtype=float).reshape(-1, 2)
        err = np.abs(np.stack([means - cis[:, 0], cis[:, 1] - means]))
        ax.errorbar(
            xs,
            means,
            yerr=np.nan_to_num(err),
            marker="o",
            capsize=3,
            color="C0",
            label="milestone cell retrained",
        )
        for c, (label, by_key) in enumerate(refs.items(), start=1):
            a = by_key[key]
            if a["n"] and np.isfinite(a["mean"]):
                ax.axhline(a["mean"], color=f"C{c}", ls="--", label=f"{label}, n={a['n']}")
                lo, hi = a["mean_ci"]
                ax.axhspan(lo, hi, color=f"C{c}", alpha=0.12, lw=0)
        ax.set_xlim(0, 1.05)

    fm.panels(path, title, "search progress (fraction of the search budget)", ylabel, draw)


def _cells_text(rs) -> list[str]:
    """Which milestones share a cell: letters name the distinct genotypes of a game."""
    names: dict = {}
    letter = lambda g: names.setdefault(
        None if g is None else g.to_json(), chr(ord("A") + len(names))
    )
    return [
        f"- seed {seed}: "
        + ", ".join(
            f"@{r.fraction:g} cell {letter(r.genotype)}"
            for r in sorted(g, key=lambda r: r.fraction)
        )
        for seed, g in fm.group(rs, lambda r: r.seed).items()
    ]


def section(runs, out_dir: str) -> list[str]:
    ms = [r for r in runs if r.method == "milestone cell"]
    if not ms:
        return [
            "No milestone runs found (no workdir whose genotype has a milestone.json "
            "beside it; sweep a protocol with milestones, e.g. --protocol=smoke)."
        ]
    out = [
        "Each search's genotype at a fraction of its budget (the last genotype.json write "
        "at or before it), retrained from scratch with the retrain settings. Final return "
        f"as in section 5 (mean of the last {LAST_EVALS} evaluations); mean over seeds "
        "with a 95% percentile-bootstrap CI (2000 resamples, seed 0; a single run gives a "
        "point). References: the search's final retrain (`darts cell`) and IMPALA, same "
        "game and agent.",
        "",
    ]
    refs_of = references(runs)
    pooled = {}  # (agent, cell name) -> key -> normalised final scores of every game
    head = [
        "| cell | genotype at env steps | runs | test return [95% CI] | test normalised "
        "[95% CI] | train return [95% CI] | train normalised [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for (game, agent), rs in fm.group(ms, lambda r: (r.game, r.agent)).items():
        out += [f"### {game} ({agent})", ""] + head
        points = {k: [] for k in KEYS}
        for frac, group in fm.group(rs, lambda r: r.fraction).items():
            stats = _stats(group, game)
            steps = ", ".join(sorted({f"{int(r.milestone.get('env_steps', 0)):,}" for r in group}))
            out.append(_row(f"milestone @{frac:g}", steps, group, stats))
            for k in KEYS:
                points[k].append((frac, stats[k][0]))
            _pool(pooled, (agent, frac), game, group)
        refs, norm = {}, {}
        for (label, method), steps in zip(refs_of, ("end of search", "-")):
            group = [r for r in runs if r.method == method and r.game == game and r.agent == agent]
            stats = _stats(group, game)
            refs[label] = {k: stats[k][0] for k in KEYS}
            norm[label] = stats[KEYS[1]][1]["mean"]
            out.append(_row(label, steps, group, stats))
            _pool(pooled, (agent, label), game, group)
        out += ["", _versus(refs_of, *norm.values())]
        png = f"milestones_{fm.slug(game)}_{fm.slug(agent)}.png"
        _figure(os.path.join(out_dir, png), f"{game} ({agent})", points, refs, "final return")
        out += ["", "Cells (letters: distinct genotypes of this game and agent):"]
        out += _cells_text(rs) + ["", f"![cells along the search {game} {agent}]({png})", ""]
    return out + _pooled(pooled, out_dir, refs_of)


def _versus(refs_of: tuple, darts: float, impala: float) -> str:
    """The line the milestones are read against: final retrain minus the baseline."""
    return (
        f"DARTS final retrain vs {refs_of[1][0]}, normalised test score (mean): "
        f"{fm.fmt(darts)} vs {fm.fmt(impala)}, difference {fm.fmt(darts - impala)}."
    )


def _pool(pooled: dict, name: tuple, game: str, runs) -> None:
    for k in KEYS:
        pooled.setdefault(name, {}).setdefault(k, []).extend(
            analysis.normalized_scores(game, [final_return(r, k) for r in runs])
        )


def _pooled(pooled: dict, out_dir: str, refs_of: tuple) -> list[str]:
    out = [
        "### Pooled across games",
        "",
        "Normalised final scores of all (game, seed) "
        "runs per milestone, pooled; mean and IQM with 95% bootstrap CIs. Reference rows "
        "pool the same games.",
        "",
    ]
    for agent in sorted({a for a, _ in pooled}):
        out += [
            f"#### {agent}",
            "",
            "| cell | levels | n | mean [95% CI] | IQM [95% CI] |",
            "|---|---|---|---|---|",
        ]
        fracs = sorted(f for a, f in pooled if a == agent and not isinstance(f, str))
        points = {k: [] for k in KEYS}
        refs, ref_means = {label: {} for label, _ in refs_of}, {}
        for name in [*fracs, *refs]:
            for k in reversed(KEYS):
                a = analysis.aggregate(pooled[agent, name][k])
                if k == KEYS[1] and name in refs:
                    ref_means[name] = a["mean"]
                lo, hi = a["iqm_ci"]
                out.append(
                    f"| {f'milestone @{name:g}' if name in fracs else name} | "
                    f"{k.split('_')[-1]} | {a['n']} | {_ci_cell(a, 3)} | "
                    f"{fm.fmt(a['iqm'])} [{fm.fmt(lo)}, {fm.fmt(hi)}] |"
                )
                if name in fracs:
                    points[k].append((name, a))
                else:
                    refs[name][k] = a
        out += ["", _versus(refs_of, *(ref_means[label] for label, _ in refs_of))]
        png = f"milestones_pooled_{fm.slug(agent)}.png"
        _figure(
            os.path.join(out_dir, png),
            f"all games ({agent})",
            points,
            refs,
            "normalised final score",
        )
        out += ["", f"![cells along the search, pooled, {agent}]({png})", ""]
    return out
