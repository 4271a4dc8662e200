"""Evaluation report: writes ``report.md`` with PNG figures from run workdirs.

The runs are read by rldarts/report/report_runs.py (what a workdir holds, its method: ``search``,
``darts cell``, ``random cell``, ``milestone cell``, ``impala``); a label is
``method (agent)``, so every table keeps agents apart. A run is *partial* when its last
env_steps < total_env_steps. Every section (`SECTIONS`) is written even when it has
nothing to show, saying why. Sections 6, 7 and 8 live in report_random.py,
report_milestones.py and report_claims.py (the paper's claims C1-C6 with verdicts).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from rldarts.common.files import atomic_write_text
from rldarts.env import procgen_scores
from rldarts.model import ops, visualize
from rldarts.report import analysis, report_claims, report_milestones, report_random
from rldarts.report import formatting as fm
from rldarts.report.report_runs import KEYS, LAST_EVALS, as_number, discover_runs, final_return

SECTIONS = (
    "1. Budgets actually used",
    "2. Alpha evolution of the search runs",
    "3. Final cells",
    "4. Learning curves",
    "5. Final returns and normalised scores",
    "6. DARTS vs random search",
    "7. Cells along the search",
    "8. Paper claims",
)
PAPER_STEPS = 25_000_000
FAR_BELOW = 0.5  # a run below this share of the paper's budget triggers the bold warning
_PUBLISHED = "openai_ppo_impala_{}_25M_{}"


def infer_preset(config: dict, presets: dict) -> str:
    """The preset whose net widths (depths, dense) and PPO rollout shape match `config`."""
    widths = lambda c: (tuple(c.get("net", {}).get("depths", ())), c.get("net", {}).get("dense"))
    names, sizes = [n for n, p in presets.items() if widths(p) == widths(config)], widths(config)
    ppo = lambda c: tuple(c.get("ppo", {}).get(k) for k in ("num_steps", "update_epochs"))
    names = [n for n in names if ppo(presets[n]) == ppo(config)] or names
    family = lambda c: fm.env_family(str(c.get("env_name", "")))  # dmc_smoke vs minatar_smoke
    names = [n for n in names if family(presets[n]) is family(config)] or names
    return (
        f"{'/'.join(names) if names else 'custom'} "
        f"({'/'.join(map(str, sizes[0]))}, dense {sizes[1]})"
    )


def _budgets(runs, skipped, presets) -> list[str]:
    out = [] if runs else ["No runs found (a workdir holds config.json and metrics.csv)."]
    small = [  # the paper's 25M-step protocol is Procgen's: other families are not held to it
        max(r.total, r.reached)
        for r in runs
        if fm.has_levels(r.game) and max(r.total, r.reached) < FAR_BELOW * PAPER_STEPS
    ]
    if small:
        out += [
            f"**WARNING: {len(small)} of {len(runs)} runs used at most {fm.steps(max(small))} "
            f"env steps, far below the paper protocol ({fm.steps(PAPER_STEPS)} env steps per "
            "game, 3+ seeds). These numbers demonstrate the pipeline; they are NOT a "
            "reproduction of the paper's results.**",
            "",
        ]
    if any(r.partial for r in runs):
        out += [
            f"**{sum(r.partial for r in runs)} partial run(s)** (stopped before "
            "total_env_steps): their curves end early and their final scores use the "
            "last evaluations they reached.",
            "",
        ]
    if runs:
        out += [
            "| run | method | game | seed | env steps reached / configured | status | "
            "preset (net widths) | levels | mode |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| {r.name} | {r.label} | {r.game} | {r.seed} | {fm.steps(r.reached)} / "
            f"{fm.steps(r.total)} | {'**partial**' if r.partial else 'complete'} | "
            f"{infer_preset(r.config, presets)} | {_levels(r)} |"
            for r in runs
        ]
        out += [
            "",
            "Games: " + ", ".join(sorted({r.game for r in runs})) + ". Seeds per "
            "method: "
            + "; ".join(
                f"{lab}: {sorted({r.seed for r in rs})}"
                for lab, rs in fm.group(runs, lambda r: r.label).items()
            )
            + ".",
        ]
    return out + (["", "Skipped workdirs:"] + [f"- {s}" for s in skipped] if skipped else [])


def _levels(run) -> str:
    """The budgets table's "levels | mode" cells ("- | -" for a family without levels)."""
    if not fm.has_levels(run.game):
        return "- | -"
    return f"{run.config.get('num_levels', '?')} | {run.config.get('distribution_mode', '?')}"


def _alphas(runs, out_dir) -> list[str]:
    out = []
    for r in (r for r in runs if r.method == "search"):
        out += [
            f"### {r.name} ({r.game}, {r.agent}, seed {r.seed}, arch.mode "
            f"{r.config.get('arch', {}).get('mode', '?')})",
            "",
        ]
        ent = {
            k[14:]: v
            for row in r.rows
            for k, v in row.items()
            if k.startswith("alpha_entropy_") and as_number(v) is not None
        }  # last values
        out += (
            [
                "Final mean alpha entropy: "
                + ", ".join(f"{k} {fm.fmt(v)}" for k, v in ent.items()),
                "",
            ]
            if ent
            else []
        )
        if not r.alpha_history:
            out += ["alpha_history.jsonl missing or empty: no alpha plot.", ""]
            continue
        try:
            png = f"alphas_{fm.slug(r.name)}.png"
            visualize.plot_alpha_history(
                r.alpha_history,
                ops.resolve_search_space(r.config["net"]["search_space"]),
                os.path.join(out_dir, png),
                float(r.config.get("arch", {}).get("final_inverse_temperature", 1.0)),
            )
            out += [f"![alpha evolution of {r.name}]({png})", ""]
        except (ValueError, KeyError, TypeError) as e:
            out += [f"Alpha plot failed: {e}", ""]
    return out or ["No search runs found (a search run has a darts_* network and no genotype)."]


def _cells(runs, out_dir) -> list[str]:
    out, drawn = [], {}
    for r in (r for r in runs if r.method in ("search", "darts cell") and r.genotype):
        drawn.setdefault(r.genotype.to_json(), []).append(r)
    for k, rs in enumerate(drawn.values()):
        out += [f"### Cell {k + 1}: used by " + ", ".join(f"{r.name} ({r.method})" for r in rs), ""]
        for ct, cell in rs[0].genotype.cells.items():
            png = f"cell{k + 1}_{ct}.png"
            visualize.draw_genotype(cell, os.path.join(out_dir, png), f"cell {k + 1}: {ct}")
            out += [f"![{ct} cell {k + 1}]({png})", ""]
    randoms = sorted(
        (r for r in runs if r.method == "random cell" and r.genotype is not None),
        key=lambda r: (r.sample_index, r.name),
    )
    out += ["Random-search cells (text):", ""] if randoms else []
    out += [
        f"- sample {r.sample_index} ({r.name}): "
        + "; ".join(
            f"{ct}: "
            + ", ".join(f"n{j}<-{i}:{op}" for j, node in enumerate(c.nodes) for i, op in node)
            for ct, c in r.genotype.cells.items()
        )
        for r in randoms
    ]
    return out or ["No final cells found (no readable genotype in any search or cell run)."]


def _learning_curves(runs, out_dir) -> list[str]:
    if not any(r.rows for r in runs):
        return ["No metrics rows in any run: nothing to plot."]
    out = [
        "Mean over seeds; band: 95% normal CI (mean +- 1.96 SE) with 3+ seeds, min-max "
        "with fewer. Train: `episode_return_train` (training-level rollouts, every "
        "iteration); test: `episode_return_test` (evaluation on all levels; families "
        "without levels, MinAtar and DM-Control: evaluation episodes on fresh env seeds). "
        "Search runs show the supernet acting. DM-Control curves are drawn against env "
        "frames (agent steps x action repeat), as DrQ and PI-SAC report their budgets.",
        "",
    ]
    for game, rs in fm.group(runs, lambda r: r.game).items():
        per_step, xlabel = fm.x_axis(game)

        def draw(ax, key, rs=rs, per_step=per_step):
            for c, (label, group) in enumerate(fm.group(rs, lambda r: r.label).items()):
                x, m, lo, hi = analysis.mean_and_band(
                    [
                        (
                            [per_step * row["env_steps"] for row in r.rows],
                            [as_number(row.get(key), np.nan) for row in r.rows],
                        )
                        for r in group
                    ]
                )
                if x.size:
                    ax.plot(x, m, color=f"C{c % 10}", label=f"{label}, n={len(group)}")
                    ax.fill_between(x, lo, hi, color=f"C{c % 10}", alpha=0.2, lw=0)

        png = f"curves_{fm.slug(game)}.png"
        fm.panels(os.path.join(out_dir, png), game, xlabel, "episode return", draw)
        out += [f"### {game}", "", f"![learning curves {game}]({png})", ""]
    return out


def _scores(runs) -> list[str]:
    if not runs:
        return ["No runs: no scores."]
    out = [
        f"Final return of a run = mean of its last {LAST_EVALS} evaluation rows (rows "
        "with `episode_return_test`; train = `episode_return_train` on those rows), then "
        "the mean over seeds. Normalised = (R - Rmin) / (Rmax - Rmin), constant table: "
        f"{procgen_scores.CONSTANT_TABLE}. Published: OpenAI PPO + IMPALA-CNN, 25M steps, "
        "200 levels, 3 seeds (mean +- std).",
        "",
    ]
    table, per_label = procgen_scores.load(), {}
    for game, rs in fm.group(runs, lambda r: r.game).items():
        out += _game_scores(game, rs, table.get(game), per_label)
    return out + _aggregate_scores(runs, table, per_label)


def _game_scores(game, runs, published: dict | None, per_label: dict) -> list[str]:
    """One game's table: a row per method, then the published reference; adds each
    run's normalised scores to `per_label` for the aggregate."""
    out = [
        f"### {game}",
        "",
        "| method | runs | partial | train return | test return | "
        "train normalised | test normalised |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, group in fm.group(runs, lambda r: r.label).items():
        finals = np.array([[final_return(r, k) for r in group] for k in KEYS])
        means = [
            float(np.mean(f[np.isfinite(f)])) if np.isfinite(f).any() else float("nan")
            for f in finals
        ]
        norm = analysis.normalized_scores(game, means)
        for k, f in zip(KEYS, finals):
            per_label.setdefault((label, k), []).extend(analysis.normalized_scores(game, f))
        out.append(
            f"| {label} | {int(np.isfinite(finals[1]).sum())} of {len(group)} | "
            f"{sum(r.partial for r in group)} | {fm.fmt(means[0], 2)} | "
            f"{fm.fmt(means[1], 2)} | {fm.fmt(norm[0])} | {fm.fmt(norm[1])} |"
        )
    if published is None:
        return out + ["| (no Procgen constants for this game: no normalisation) | | | | | | |", ""]
    pub = [
        (published[_PUBLISHED.format(s, "mean")], published[_PUBLISHED.format(s, "std")])
        for s in ("train200", "test")
    ]
    return out + [
        "| published PPO + IMPALA-CNN | 3 | 0 | "
        + " | ".join(f"{m:.2f} +- {s:.2f}" for m, s in pub)
        + " | "
        + " | ".join(fm.fmt(procgen_scores.normalized_score(game, m)) for m, _ in pub)
        + " |",
        "",
    ]


def _aggregate_scores(runs, table: dict, per_label: dict) -> list[str]:
    out = [
        "### Aggregate across games",
        "",
        "Normalised final scores of all (game, seed) "
        "runs pooled per method; 95% percentile-bootstrap CIs (2000 resamples, seed 0); "
        "IQM with fractional weights at the quartiles (`rldarts.report.analysis`).",
        "",
        "| method | levels | n | mean [95% CI] | IQM [95% CI] |",
        "|---|---|---|---|---|",
    ]
    ci = lambda lo_hi: f"[{fm.fmt(lo_hi[0])}, {fm.fmt(lo_hi[1])}]"
    for (label, key), scores in sorted(per_label.items()):
        a = analysis.aggregate(scores)
        out.append(
            f"| {label} | {key.split('_')[-1]} | {a['n']} | {fm.fmt(a['mean'])} "
            f"{ci(a['mean_ci'])} | {fm.fmt(a['iqm'])} {ci(a['iqm_ci'])} |"
        )
    games = sorted({r.game for r in runs} & set(table))
    for split, s in (("train", "train200"), ("test", "test")) if games else ():
        pub = [
            procgen_scores.normalized_score(g, table[g][_PUBLISHED.format(s, "mean")])
            for g in games
        ]
        out.append(
            f"| published PPO + IMPALA-CNN (same games) | {split} | {len(pub)} | "
            f"{fm.fmt(float(np.mean(pub)))} | {fm.fmt(analysis.interquartile_mean(pub))} |"
        )
    return out


def write_report(run_dirs: Sequence[str], out_dir: str, presets: dict | None = None) -> str:
    """Writes ``out_dir/report.md`` and its PNGs for the runs under `run_dirs`; returns
    the report's path. `presets`: name -> config dict, to name each run's preset (the
    binaries pass ``experiments.configs.base.preset_dicts()``); without it, "custom"."""
    runs, skipped = discover_runs(run_dirs)
    os.makedirs(out_dir, exist_ok=True)
    presets = presets or {}
    body = [
        _budgets(runs, skipped, presets),
        _alphas(runs, out_dir),
        _cells(runs, out_dir),
        _learning_curves(runs, out_dir),
        _scores(runs),
        report_random.section(runs, out_dir),
        report_milestones.section(runs, out_dir),
        report_claims.section(runs, out_dir, run_dirs),
    ]
    # Paths relative to the report, so it reads the same wherever it is copied.
    where = ", ".join(
        os.path.relpath(os.path.abspath(d), os.path.abspath(out_dir)) for d in run_dirs
    )
    lines = [
        "# RL-DARTS evaluation report",
        "",
        f"Runs from: {where} ({len(runs)} workdirs, paths relative to this report). "
        f"Normalisation constants: {procgen_scores.CONSTANT_TABLE}.",
        "",
    ]
    for title, section in zip(SECTIONS, body):
        lines += [f"## {title}", ""] + section + [""]
    path = os.path.join(out_dir, "report.md")
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
