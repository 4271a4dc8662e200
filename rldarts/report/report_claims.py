"""Report section "Paper claims": one row per claim of RL-DARTS (C1-C6), the measurement
that tests it, its effect with a 95% percentile-bootstrap CI over (agent, game, seed)
units, and a verdict the CI decides (`analysis.verdict`), never the mean alone.

Scores: the final return of a run (mean of its last evaluations, `final_return`, test
key) normalised per game and agent: Procgen games by the constants table; any other game
(MinAtar) by the runs themselves, (R - R_untrained) / (R_baseline - R_untrained), where
R_baseline is the mean final return of the hand-designed baseline's runs and R_untrained
the median return of the random-cell runs' evaluations before training (env step 0,
``eval.at_start``; the baseline's runs' when there are no random cells). Neither
constant is taken from the cell being tested, so a claim's effect cannot move its own
yardstick.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from matplotlib.figure import Figure

from rldarts.env import procgen_scores
from rldarts.model import visualize
from rldarts.report import analysis
from rldarts.report import formatting as fm
from rldarts.report.report_runs import (
    BASELINES,
    KEYS,
    as_number,
    final_return,
    untrained_return,
)

KEY = KEYS[1]  # the evaluation return (Procgen: all levels)
APPROACH_MARGIN = 0.25  # C1: the supernet within 0.25 normalised of the baseline
COMPETITIVE_MARGIN = 0.1  # C2: the retrained cell within 0.1 normalised of the baseline
MIN_GAIN = 0.05  # C3-C5: an improvement smaller than this is no improvement
MIN_UNITS = 3
AGENTS = ("ppo", "dqn")
OP_RECOVERY_DEPTH = 2  # op-recovery JSON files at most this deep under a run root


@dataclasses.dataclass
class Claim:
    key: str
    text: str
    measurement: str
    above: float  # supported when the CI's low end is above this
    below: float  # not supported when the CI's high end is below this

    @property
    def rule(self) -> str:
        return (
            f"supported: CI > {self.above:g}; not supported: CI < {self.below:g}; else inconclusive"
        )


CLAIMS = (
    Claim(
        "C1",
        "the supernet acts and trains end to end, approaching a fixed network",
        "supernet (search run acting) - baseline, normalised final return",
        -APPROACH_MARGIN,
        -APPROACH_MARGIN,
    ),
    Claim(
        "C2",
        "the discretized cell, retrained from scratch, is competitive with the baseline",
        "retrained DARTS cell - baseline, normalised final return",
        -COMPETITIVE_MARGIN,
        -COMPETITIVE_MARGIN,
    ),
    Claim(
        "C3",
        "the supernet gradually learns better cells",
        "retrain of the final cell - retrain of the earliest milestone cell",
        0.0,
        MIN_GAIN,
    ),
    Claim(
        "C4",
        "DARTS finds good cells more efficiently than random search",
        "DARTS cell - best of the random cells affordable with DARTS's env steps "
        "(search + retrain)",
        0.0,
        MIN_GAIN,
    ),
    Claim(
        "C5",
        "DARTS upweights the right operations (no RL: experiments/op_recovery.py)",
        "share of the teacher's edges recovered - chance share, per seed",
        0.0,
        MIN_GAIN,
    ),
)


def normalizers(runs) -> tuple[dict, list[str]]:
    """(game, agent) -> (low, high, source); notes for games left out."""
    table, out, notes = procgen_scores.load(), {}, []
    for (game, agent), rs in fm.group(runs, lambda r: (r.game, r.agent)).items():
        if game in table:
            c = table[game]
            out[game, agent] = (c["rmin_easy"], c["rmax_easy"], "Procgen constants")
            continue
        base = [final_return(r, KEY) for r in rs if r.method in BASELINES]
        randoms = [r for r in rs if r.method == "random cell"]
        untrained = [
            untrained_return(r, KEY) for r in (randoms or [r for r in rs if r.method in BASELINES])
        ]
        low, high = _nanmedian(untrained), _nanmean(base)
        source = "random cells' step-0 evaluations" if randoms else "baseline's step-0 evaluations"
        if not np.isfinite(low):
            notes.append(
                f"{game} ({agent}): no evaluation before training (runs need "
                "eval.at_start=True): not normalised"
            )
            continue
        if not np.isfinite(high) or high <= low:  # low is finite: checked above
            notes.append(
                f"{game} ({agent}): no baseline improvement over the untrained return "
                f"(baseline {fm.fmt(high, 2)}, untrained {fm.fmt(low, 2)}): not normalised"
            )
            continue
        out[game, agent] = (low, high, source)
    return out, notes


def _nanmean(x) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(np.mean(a[np.isfinite(a)])) if np.isfinite(a).any() else float("nan")


def _nanmedian(x) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(np.median(a[np.isfinite(a)])) if np.isfinite(a).any() else float("nan")


def score(run, norm: dict) -> float:
    """The run's normalised final return (NaN when its game has no normaliser)."""
    if (run.game, run.agent) not in norm:
        return float("nan")
    low, high, source = norm[run.game, run.agent]
    r = final_return(run, KEY)
    if source == "Procgen constants":
        return float(analysis.normalized_scores(run.game, [r])[0])
    return float(analysis.relative_scores([r], low, high)[0])


def units(runs) -> dict:
    """(agent, game, seed) -> method -> runs."""
    out: dict = {}
    for r in runs:
        out.setdefault((r.agent, r.game, r.seed), {}).setdefault(r.method, []).append(r)
    return out


def _mean_score(rs, norm) -> float:
    return _nanmean([score(r, norm) for r in rs]) if rs else float("nan")


def paired(runs, norm: dict, method: str) -> dict:
    """(agent, game, seed) -> `method`'s score - the baseline's, for C1 / C2."""
    out = {}
    for unit, by in units(runs).items():
        base = [r for m in BASELINES for r in by.get(m, [])]
        out[unit] = _mean_score(by.get(method, []), norm) - _mean_score(base, norm)
    return out


def milestone_gain(runs, norm: dict) -> dict:
    """C3: the final cell's retrain (darts cell, else the latest milestone) minus the
    earliest milestone's retrain below 1.0, per unit."""
    out = {}
    for unit, by in units(runs).items():
        ms = sorted(by.get("milestone cell", []), key=lambda r: r.fraction)
        early = [r for r in ms if r.fraction < 1.0][:1]
        late = by.get("darts cell") or [r for r in ms if r.fraction == ms[-1].fraction]
        if early and late and late[0] is not early[0]:
            out[unit] = _mean_score(late, norm) - _mean_score(early, norm)
    return out


def _costs(by: dict) -> tuple[float, float]:
    """(DARTS's env steps: its search + its retrain, one random cell's retrain steps)."""
    darts = sum(r.reached for r in by.get("search", [])[:1] + by.get("darts cell", [])[:1])
    randoms = by.get("random cell", [])
    return float(darts), float(np.mean([r.reached for r in randoms])) if randoms else 0.0


def random_comparison(runs, norm: dict) -> tuple[dict, list]:
    """C4 per unit: the DARTS cell's score minus the best of the first m random cells
    (sample order), m = the number of random retrains DARTS's env steps pay for; and per
    unit the cost ratio (env steps random search needed to reach the DARTS cell's score /
    DARTS's), a lower bound (censored) when none of its cells reached it."""
    gains, ratios = {}, []
    for unit, by in units(runs).items():
        cells = sorted(by.get("random cell", []), key=lambda r: (r.sample_index, r.name))
        if not cells or not by.get("darts cell") or not by.get("search"):
            continue
        darts_cost, cell_cost = _costs(by)
        if darts_cost <= 0 or cell_cost <= 0:
            continue
        m = int(min(len(cells), max(1, round(darts_cost / cell_cost))))
        scores = [score(r, norm) for r in cells]
        target = _mean_score(by["darts cell"], norm)
        gains[unit] = (
            target - float(np.nanmax(scores[:m])) if np.isfinite(scores[:m]).any() else np.nan
        )
        hit = next((i for i, v in enumerate(scores) if v >= target), None)
        if np.isfinite(target):
            n = len(cells) if hit is None else hit + 1
            ratios.append((n * cell_cost / darts_cost, hit is None))
    return gains, ratios


def find_op_recovery(run_dirs) -> list[tuple[str, dict]]:
    """op-recovery results (experiments/op_recovery.py --out=FILE.json: ``per_seed``
    shares and ``chance``) at most OP_RECOVERY_DEPTH folders under the run roots."""
    found = []
    for root in run_dirs:
        level = [root]
        for _ in range(OP_RECOVERY_DEPTH + 1):
            files = [e for d in level for e in sorted(os.scandir(d), key=lambda e: e.name)]
            for e in files:
                if e.is_file() and e.name.startswith("op_recovery") and e.name.endswith(".json"):
                    result = _read_op_recovery(e.path)
                    if result is not None:
                        found.append((e.path, result))
            level = [e.path for e in files if e.is_dir() and not e.name.startswith(".")]
    return found


def _read_op_recovery(path: str) -> dict | None:
    try:
        with open(path) as f:
            data = json.load(f)
        shares = [float(r["share"]) for r in data["per_seed"]]
        return {"shares": shares, "chance": float(data["chance"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not an op-recovery result: ignored


@dataclasses.dataclass
class Row:
    claim: Claim | None  # None: C6
    n: int
    stats: dict | None  # analysis.aggregate of the effects; None when not measured
    verdict: str
    note: str = ""


def _row(claim: Claim, values) -> Row:
    # Sorted: the bootstrap's resamples then do not depend on the order runs were found.
    a = analysis.aggregate(sorted(v for v in values if np.isfinite(v)))
    return Row(claim, a["n"], a, analysis.verdict(a["mean_ci"], a["n"], claim.above, claim.below))


def effects(runs, norm: dict) -> dict:
    """C1-C4: claim key -> (agent, game, seed) -> effect."""
    return {
        "C1": paired(runs, norm, "search"),
        "C2": paired(runs, norm, "darts cell"),
        "C3": milestone_gain(runs, norm),
        "C4": random_comparison(runs, norm)[0],
    }


def per_agent(found: dict) -> dict:
    """agent -> C1-C4 rows over that agent's units only."""
    agents = sorted({u[0] for e in found.values() for u in e} | set(AGENTS))
    return {
        a: [_row(c, [v for u, v in found[c.key].items() if u[0] == a]) for c in CLAIMS[:4]]
        for a in agents
    }


def c6(by_agent: dict) -> Row:
    """Supported when every agent's C1-C4 are; not supported when one of them is not;
    inconclusive otherwise, and when PPO or DQN has no measured claim."""
    missing = [a for a in AGENTS if not any(r.n for r in by_agent.get(a, []))]
    verdicts = [r.verdict for a in AGENTS for r in by_agent.get(a, [])]
    n = len(AGENTS) - len(missing)  # agents with a measured claim
    if missing:
        return Row(None, n, None, analysis.INCONCLUSIVE, f"no runs of {', '.join(missing)}")
    if all(v == analysis.SUPPORTED for v in verdicts):
        return Row(None, n, None, analysis.SUPPORTED)
    if analysis.NOT_SUPPORTED in verdicts:
        return Row(None, n, None, analysis.NOT_SUPPORTED)
    return Row(None, n, None, analysis.INCONCLUSIVE)


def claims_table(runs, run_dirs) -> tuple[list[Row], dict, dict, list[str]]:
    """The C1-C6 rows, the per-agent C1-C4 rows, the normalisers and the notes."""
    norm, notes = normalizers(runs)
    found = effects(runs, norm)
    rows = [_row(c, found[c.key].values()) for c in CLAIMS[:4]]
    results = find_op_recovery(run_dirs)
    if results:
        diffs = [s - r["chance"] for _, r in results for s in r["shares"]]
        rows.append(_row(CLAIMS[4], diffs))
        rows[-1].note = ", ".join(os.path.basename(p) for p, _ in results)
    else:
        rows.append(Row(CLAIMS[4], 0, None, "not measured", "no op_recovery*.json in the runs"))
    by_agent = per_agent(found)
    rows.append(c6(by_agent))
    return rows, by_agent, norm, notes


def _effect(row: Row) -> str:
    if not row.stats or not row.stats["n"]:
        return "n/a"
    lo, hi = row.stats["mean_ci"]
    return f"{fm.fmt(row.stats['mean'])} [{fm.fmt(lo)}, {fm.fmt(hi)}]"


def _intro() -> list[str]:
    return [
        "Each claim is tested on the evaluation return (`episode_return_test`) of every "
        "(agent, game, seed) unit: the effect is a paired difference of normalised final "
        "returns within a unit, pooled over games and seeds; the CI is the 95% percentile "
        "bootstrap of its mean over the units (2000 resamples, seed 0). **The CI decides, "
        f"not the mean**: a claim is *supported* when the whole CI lies above its "
        f"threshold, *not supported* when it lies wholly below its refutation bound, else "
        f"*inconclusive*; with fewer than {MIN_UNITS} units always inconclusive. C1: "
        f"threshold = bound = -{APPROACH_MARGIN:g} (the supernet within {APPROACH_MARGIN:g} of "
        f"the baseline). C2 'competitive': threshold = bound = -{COMPETITIVE_MARGIN:g}. C3, "
        f"C4, C5 (an improvement): threshold 0, bound {MIN_GAIN:g} (a CI wholly below "
        f"{MIN_GAIN:g} excludes an improvement worth having). C6: the C1-C4 verdicts per "
        "agent: supported when every one is supported for PPO and for DQN, not supported "
        "when one is not, inconclusive otherwise or when an agent has no runs.",
        "",
        "Normalisation: Procgen games by the constants table "
        f"({procgen_scores.CONSTANT_TABLE}); games without constants (MinAtar) per game "
        "and agent by the runs, (R - R_untrained) / (R_baseline - R_untrained): 1 = the "
        "hand-designed baseline's mean final return, 0 = R_untrained, the median of the "
        "random-cell runs' evaluation returns before training (env step 0, "
        "eval.at_start; the baseline's own when there are no random cells). "
        "Both come from runs other than the cell under test, so no claim moves its own "
        "yardstick; for C1/C2 the baseline scores ~1 by construction and the effect reads "
        "as a share of the baseline's learning.",
        "",
    ]


def _main_table(rows: list[Row]) -> list[str]:
    out = [
        "| claim | measurement | units | effect: mean [95% CI] | IQM | rule | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.claim is None:
            out.append(
                "| C6 all of this with PPO (on-policy) and DQN (off-policy) | the C1-C4 "
                f"verdicts per agent (below) | {r.n} of {len(AGENTS)} agents | - | - | "
                "supported: every "
                "agent's C1-C4 supported | **"
                + r.verdict
                + "**"
                + (f" ({r.note})" if r.note else "")
                + " |"
            )
            continue
        iqm = fm.fmt(r.stats["iqm"]) if r.stats else "n/a"
        out.append(
            f"| {r.claim.key} {r.claim.text} | {r.claim.measurement} | {r.n} | {_effect(r)} "
            f"| {iqm} | {r.claim.rule} | **{r.verdict}**"
            + (f" ({r.note})" if r.note else "")
            + " |"
        )
    return out


def _agent_table(by_agent: dict) -> list[str]:
    out = [
        "",
        "Per agent (what C6 reads):",
        "",
        "| agent | " + " | ".join(c.key for c in CLAIMS[:4]) + " |",
        "|---|" + "---|" * 4,
    ]
    for agent, rows in by_agent.items():
        out.append(
            f"| {agent} | " + " | ".join(f"{r.verdict}: {_effect(r)}, n={r.n}" for r in rows) + " |"
        )
    return out


def _norm_table(norm: dict, notes: list[str], ratios: list) -> list[str]:
    out = ["", "| game | agent | normalised by | 0 = | 1 = |", "|---|---|---|---|---|"]
    out += [
        f"| {g} | {a} | {src} | {fm.fmt(lo, 2)} | {fm.fmt(hi, 2)} |"
        for (g, a), (lo, hi, src) in sorted(norm.items())
    ]
    out += [f"- {n}" for n in notes]
    if ratios:
        vals = np.array([v for v, _ in ratios])
        med, censored = float(np.median(vals)), sum(c for _, c in ratios)
        out += [
            "",
            "C4, cost ratio (env steps random search needed to reach the DARTS cell's "
            "score / DARTS's search + retrain env steps), per unit: median "
            f"{'>= ' if censored else ''}{fm.fmt(med, 2)} over {len(ratios)} units; "
            f"{censored} unit(s) where no random cell reached it (counted as all their "
            "cells: a lower bound). The paper reports up to 30x.",
        ]
    return out


CURVES = (("search", "supernet (search)"), ("darts cell", "retrained DARTS cell"))


def _curves(runs, out_dir) -> list[str]:
    """Returns vs env steps (DM-Control: frames) per game and agent: supernet, cell,
    baseline, random cells."""
    out = []
    for (game, agent), rs in fm.group(runs, lambda r: (r.game, r.agent)).items():
        groups = [(label, [r for r in rs if r.method == m]) for m, label in CURVES]
        groups += [(m, [r for r in rs if r.method == m]) for m in BASELINES]
        groups += [("random cells", [r for r in rs if r.method == "random cell"])]
        groups = [(label, g) for label, g in groups if g]
        if not groups:
            continue

        per_step, xlabel = fm.x_axis(game)

        def draw(ax, key, groups=groups, per_step=per_step):
            for c, (label, group) in enumerate(groups):
                x, m, lo, hi = analysis.mean_and_band(
                    [
                        ([per_step * row["env_steps"] for row in r.rows], _column(r, key))
                        for r in group
                    ]
                )
                if x.size:
                    ax.plot(x, m, color=f"C{c}", label=f"{label}, n={len(group)}")
                    ax.fill_between(x, lo, hi, color=f"C{c}", alpha=0.2, lw=0)

        png = f"claims_curves_{fm.slug(game)}_{fm.slug(agent)}.png"
        fm.panels(os.path.join(out_dir, png), f"{game} ({agent})", xlabel, "return", draw)
        out += [f"![returns vs {xlabel} {game} {agent}]({png})", ""]
    return out


def _column(run, key) -> list[float]:
    return [as_number(row.get(key), np.nan) for row in run.rows]


def _single(path: str, title: str, xlabel: str, ylabel: str, draw) -> None:
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    draw(ax)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    visualize.save_figure(fig, path, dpi=90)


def _milestone_plot(runs, norm, agent, out_dir) -> list[str]:
    """Normalised retrain score vs search progress (milestones; the final cell at 1)."""
    rs = [r for r in runs if r.agent == agent]
    points = [
        (f, [score(r, norm) for r in g])
        for f, g in fm.group(
            [r for r in rs if r.method == "milestone cell"], lambda r: r.fraction
        ).items()
    ]
    final = [score(r, norm) for r in rs if r.method == "darts cell"]
    points += [(1.0, final)] if final else []
    if not points:
        return []
    base = analysis.aggregate([score(r, norm) for r in rs if r.method in BASELINES])

    def draw(ax):
        aggs = [(f, analysis.aggregate(v)) for f, v in sorted(points, key=lambda p: p[0])]
        xs, ms = [f for f, _ in aggs], np.array([a["mean"] for _, a in aggs])
        ci = np.array([a["mean_ci"] for _, a in aggs]).reshape(-1, 2)
        err = np.nan_to_num(np.abs(np.stack([ms - ci[:, 0], ci[:, 1] - ms])))
        ax.errorbar(xs, ms, yerr=err, marker="o", capsize=3, label="cell retrained")
        if base["n"]:
            ax.axhline(base["mean"], color="C1", ls="--", label=f"baseline, n={base['n']}")

    png = f"claims_milestones_{fm.slug(agent)}.png"
    _single(
        os.path.join(out_dir, png),
        f"cells along the search ({agent})",
        "search progress (fraction of the search budget)",
        "normalised final return",
        draw,
    )
    return [f"![cells along the search {agent}]({png})", ""]


def _random_plot(runs, norm, agent, out_dir) -> list[str]:
    """Best-of-k random cells (normalised) vs env steps spent, and DARTS's point."""
    curves, darts = [], []
    for by in units(r for r in runs if r.agent == agent).values():
        cells = sorted(by.get("random cell", []), key=lambda r: (r.sample_index, r.name))
        if cells:
            cost = np.cumsum([r.reached for r in cells])
            curves.append(analysis.best_so_far(list(zip(cost, [score(r, norm) for r in cells]))))
        if by.get("darts cell") and by.get("search"):
            darts.append((_costs(by)[0], _mean_score(by["darts cell"], norm)))
    if not curves:
        return []

    def draw(ax):
        x, m, lo, hi = analysis.mean_and_band(curves)
        ax.plot(x, m, color="C0", label=f"random search best-of-k, n={len(curves)}")
        ax.fill_between(x, lo, hi, color="C0", alpha=0.2, lw=0)
        if darts:
            a = analysis.aggregate([s for _, s in darts])
            lo_hi = np.abs(np.array(a["mean_ci"]) - a["mean"]).reshape(2, 1)
            ax.errorbar(
                [np.mean([c for c, _ in darts])],
                [a["mean"]],
                yerr=np.nan_to_num(lo_hi),
                marker="s",
                color="C3",
                capsize=3,
                label=f"DARTS (search + retrain), n={a['n']}",
            )

    png = f"claims_random_{fm.slug(agent)}.png"
    _single(
        os.path.join(out_dir, png),
        f"DARTS vs random search ({agent})",
        "env steps spent",
        "best normalised final return",
        draw,
    )
    return [f"![DARTS vs random search {agent}]({png})", ""]


def section(runs, out_dir: str, run_dirs=()) -> list[str]:
    """The section's lines (and its PNGs in `out_dir`)."""
    rows, by_agent, norm, notes = claims_table(runs, run_dirs)
    ratios = random_comparison(runs, norm)[1]
    out = _intro() + _main_table(rows) + _agent_table(by_agent) + _norm_table(norm, notes, ratios)
    out += ["", "Returns vs env steps (mean over seeds, band as in section 4):", ""]
    out += _curves(runs, out_dir)
    for agent in sorted({r.agent for r in runs}):
        out += _milestone_plot(runs, norm, agent, out_dir) + _random_plot(
            runs, norm, agent, out_dir
        )
    return out
