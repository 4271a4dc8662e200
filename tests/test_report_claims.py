"""Report section 8, Paper claims: verdicts on synthetic MinAtar run folders with known
effects (supported, not supported, inconclusive), the CI against a NumPy bootstrap,
and MinAtar runs through every other section."""

import csv
import json
import os
import re

import numpy as np
import pytest

from rldarts.model.genotypes import CellGenotype, NetworkGenotype
from rldarts.report import analysis, formatting, report_claims
from rldarts.report import writer as report

STEPS = 1000  # env steps per row; an evaluation at 0 (untrained), then 4 rows
GAMES = ("minatar/breakout", "minatar/asterix")
SECTION = f"## {report.SECTIONS[7]}"


def _genotype():
    cell = CellGenotype(nodes=(((0, "Conv3x3Relu"),), ((0, "SkipConnection"), (1, "Conv3x3Relu"))))
    return NetworkGenotype({"normal": cell, "reduction": cell})


def _write(
    path, *, game, seed, agent, network, final, untrained=0.0, first=None, genotype="", markers=()
):  # untrained=None: no evaluation before training
    """A workdir: test return `untrained` at env step 0 (eval.at_start), then [first,
    final, final, final] at 1-4 x STEPS env steps (so the final return, the mean of the
    last 3 evaluations, is `final`); `first` defaults to `final`."""
    os.makedirs(path)
    config = {
        "env_name": game,
        "seed": seed,
        "agent": agent,
        "network": network,
        "genotype": genotype,
        "total_env_steps": 4 * STEPS,
        "net": {"depths": [4, 8], "dense": 32},
    }
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(path, "metrics.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_steps", "episode_return_train", "episode_return_test"])
        if untrained is not None:
            w.writerow([0, "", untrained])
        for i, r in enumerate([final if first is None else first, final, final, final], 1):
            w.writerow([i * STEPS, r, r])
    if genotype:
        with open(os.path.join(path, "genotype.json"), "w") as f:
            f.write(_genotype().to_json())
    for name, marker in markers:
        with open(os.path.join(path, name), "w") as f:
            json.dump(marker, f)


def _unit(root, agent, game, seed, returns):
    """One (agent, game, seed): search, darts cell, minatar_cnn, milestone @0.5 and two
    random cells with the given final returns (random cells start at 0: R_untrained)."""
    j = lambda kind, *rest: os.path.join(
        root, f"{kind}_{agent}", game.replace("/", "_"), f"seed{seed}", *rest
    )
    kw = dict(game=game, seed=seed, agent=agent)
    _write(j("search"), network="darts_minatar", final=returns["search"], **kw)
    _write(j("retrain"), network="darts_minatar", final=returns["cell"], genotype="g", **kw)
    # The baseline's untrained return differs from the random cells': R_untrained must be
    # the random cells'; its first trained evaluation is well above both.
    baseline = returns["baseline"]
    _write(j("minatar_cnn"), network="minatar_cnn", final=baseline, untrained=1.0, first=7, **kw)
    marker = ("milestone.json", {"fraction": 0.5, "env_steps": 2 * STEPS})
    _write(
        j("milestone", "m0.5"),
        network="darts_minatar",
        final=returns["milestone"],
        genotype="g",
        markers=[marker],
        **kw,
    )
    for i, final in enumerate(returns["random"]):
        marker = ("random_search.json", {"sample_index": i})
        _write(
            j("random", f"random_{i:03d}"),
            network="darts_minatar",
            final=final,
            genotype="g",
            markers=[marker],
            **kw,
        )


def _make(root, agents, games, seeds, returns_of, op_recovery=None):
    for agent in agents:
        for game in games:
            for seed in seeds:
                _unit(root, agent, game, seed, returns_of(agent, game, seed))
    if op_recovery is not None:
        with open(os.path.join(root, "op_recovery.json"), "w") as f:
            json.dump(op_recovery, f)
    return root


def _noise(agent, game, seed, scale):
    rng = np.random.default_rng([len(agent), GAMES.index(game), seed])
    return scale * rng.standard_normal(8)


def _verdicts(text):
    section = text.split(SECTION)[1]
    rows = [ln for ln in section.splitlines() if ln.startswith("| C")]
    return {ln.split("|")[1].split()[0]: ln.split("**")[1] for ln in rows}


def _report(root, out):
    with open(report.write_report([str(root)], str(out))) as f:
        return f.read()


def test_clearly_supported(tmp_path):
    def returns(agent, game, seed):
        e = _noise(agent, game, seed, 0.2)  # baseline 10 = normalised 1
        return {
            "baseline": 10 + e[0],
            "search": 9.5 + e[1],  # C1: -0.05 > -0.25
            "cell": 10.2 + e[2],  # C2: +0.02 > -0.1
            "milestone": 5 + e[3],  # C3: +0.5 > 0
            "random": [3 + e[4], 4 + e[5]],  # C4: the best of 2 = 0.4 < cell
        }

    shares = {"per_seed": [{"share": s} for s in (0.9, 0.8, 1.0, 0.9)], "chance": 0.2}
    root = _make(str(tmp_path / "runs"), ("ppo", "dqn"), GAMES, (0, 1, 2), returns, shares)
    text = _report(root, tmp_path / "out")
    assert _verdicts(text) == {f"C{i}": "supported" for i in range(1, 7)}
    assert "claims_milestones_ppo.png" in text and "claims_random_dqn.png" in text
    assert "claims_curves_minatar_breakout_ppo.png" in text
    for png in ("claims_milestones_ppo.png", "claims_random_dqn.png"):
        assert os.path.getsize(tmp_path / "out" / png) > 1000


def test_clearly_not_supported(tmp_path):
    def returns(agent, game, seed):
        e = _noise(agent, game, seed, 0.1)
        return {
            "baseline": 10 + e[0],
            "search": 2 + e[1],  # C1: -0.8
            "cell": 5 + e[2],  # C2: -0.5
            "milestone": 5 + e[3],  # C3: ~0, CI below 0.05
            "random": [9 + e[4], 8 + e[5]],  # C4: -0.4
        }

    shares = {"per_seed": [{"share": s} for s in (0.2, 0.21, 0.19, 0.2)], "chance": 0.2}
    root = _make(str(tmp_path / "runs"), ("ppo", "dqn"), GAMES, (0, 1, 2), returns, shares)
    assert _verdicts(_report(root, tmp_path / "out")) == {
        f"C{i}": "not supported" for i in range(1, 7)
    }


def test_inconclusive_with_few_noisy_seeds(tmp_path):
    spread = {0: -8.0, 1: 0.0, 2: 8.0}

    def returns(agent, game, seed):
        d = spread[seed]
        return {
            "baseline": 10,
            "search": 8 + d,
            "cell": 10 + d,
            "milestone": 10 - d / 2,
            "random": [10 - d, 9],
        }

    root = _make(str(tmp_path / "runs"), ("ppo",), GAMES[:1], (0, 1, 2), returns)
    text = _report(root, tmp_path / "out")
    verdicts = _verdicts(text)
    assert verdicts == {
        "C1": "inconclusive",
        "C2": "inconclusive",
        "C3": "inconclusive",
        "C4": "inconclusive",
        "C5": "not measured",
        "C6": "inconclusive",
    }
    assert "no runs of dqn" in text


def test_two_units_are_never_decisive(tmp_path):
    def returns(agent, game, seed):
        return {"baseline": 10, "search": 10, "cell": 10, "milestone": 1, "random": [1, 1]}

    root = _make(str(tmp_path / "runs"), ("ppo",), GAMES[:1], (0, 1), returns)
    runs, _ = report.discover_runs([root])
    rows = report_claims.claims_table(runs, [root])[0]
    assert [r.verdict for r in rows[:4]] == ["inconclusive"] * 4


def test_effect_and_ci_match_a_numpy_bootstrap(tmp_path):
    cells = {(g, s): 6 + 2 * s + 3 * k for k, g in enumerate(GAMES) for s in range(4)}

    def returns(agent, game, seed):
        return {
            "baseline": 10,
            "search": 10,
            "cell": cells[game, seed],
            "milestone": 1,
            "random": [1, 1],
        }

    root = _make(str(tmp_path / "runs"), ("ppo",), GAMES, range(4), returns)
    runs, _ = report.discover_runs([root])
    rows = report_claims.claims_table(runs, [root])[0]
    # Independent reference: R_untrained = 0 (random cells' step-0 evaluations), baseline
    # mean 10, so the C2 effect of a unit is (cell - 10) / 10; percentile bootstrap of
    # the mean of the sorted effects, NumPy's default_rng(0), 2000 resamples.
    d = np.sort([(c - 10) / 10 for c in cells.values()])
    idx = np.random.default_rng(0).integers(0, d.size, size=(2000, d.size))
    lo, hi = np.quantile(d[idx].mean(axis=1), [0.025, 0.975])
    c2 = rows[1].stats
    assert c2["n"] == 8 and c2["mean"] == pytest.approx(d.mean())
    assert c2["mean_ci"] == pytest.approx((lo, hi))
    assert c2["iqm"] == pytest.approx(analysis.interquartile_mean(d))
    verdict = "supported" if lo > -0.1 else "not supported" if hi < -0.1 else "inconclusive"
    assert rows[1].verdict == verdict
    text = _report(root, tmp_path / "out")
    row = next(ln for ln in text.split(SECTION)[1].splitlines() if ln.startswith("| C2 "))
    shown = [float(v) for v in re.findall(r"(-?\d+\.\d+) \[(-?\d+\.\d+), (-?\d+\.\d+)\]", row)[0]]
    assert shown == pytest.approx([d.mean(), lo, hi], abs=1e-3)


def test_verdict_rule():
    v = analysis.verdict
    assert v((0.1, 0.2), 5, 0.0, 0.05) == "supported"
    assert v((-0.2, 0.04), 5, 0.0, 0.05) == "not supported"
    assert v((-0.2, 0.2), 5, 0.0, 0.05) == "inconclusive"
    assert v((0.1, 0.2), 2, 0.0, 0.05) == "inconclusive"
    assert v((float("nan"),) * 2, 5, 0.0, 0.05) == "inconclusive"
    assert v((-0.05, 0.0), 5, -0.1, -0.1) == "supported"
    assert v((-0.3, -0.2), 5, -0.1, -0.1) == "not supported"


def test_minatar_runs_flow_through_every_section(tmp_path):
    def returns(agent, game, seed):
        return {"baseline": 10, "search": 5, "cell": 8, "milestone": 4, "random": [2, 3]}

    root = _make(str(tmp_path / "runs"), ("ppo",), GAMES, (0, 1), returns)
    runs, skipped = report.discover_runs([root])
    assert not skipped and {r.method for r in runs} == {
        "search",
        "darts cell",
        "minatar_cnn",
        "milestone cell",
        "random cell",
    }
    text = _report(root, tmp_path / "out")
    assert all(f"## {t}" in text for t in report.SECTIONS)
    assert "no Procgen constants for this game" in text
    milestones = text.split(f"## {report.SECTIONS[6]}")[1].split(SECTION)[0]
    assert "| minatar_cnn | - | 2 |" in milestones
    assert "DARTS final retrain vs minatar_cnn" in milestones
    norm = text.split(SECTION)[1]
    assert "| minatar/breakout | ppo | random cells' step-0 evaluations | 0.00 | 10.00 |" in norm


def test_baseline_that_never_learns_is_not_normalised(tmp_path):
    def returns(agent, game, seed):
        return {"baseline": 0, "search": 5, "cell": 8, "milestone": 4, "random": [2, 3]}

    root = _make(str(tmp_path / "runs"), ("ppo",), GAMES[:1], (0, 1, 2), returns)
    text = _report(root, tmp_path / "out")
    assert "no baseline improvement over the untrained return" in text
    assert set(_verdicts(text).values()) <= {"inconclusive", "not measured"}


def test_runs_without_an_untrained_evaluation_are_not_normalised(tmp_path):
    # The first evaluation after training began is no R_untrained (it comes after
    # learning): without a step-0 row (eval.at_start) the game is left out, by name.
    root = str(tmp_path / "runs")
    kw = dict(game=GAMES[0], agent="ppo", network="darts_minatar", untrained=None, first=0.5)
    for seed in range(3):
        _write(
            os.path.join(root, f"b{seed}"), seed=seed, final=10, **{**kw, "network": "minatar_cnn"}
        )
        _write(os.path.join(root, f"c{seed}"), seed=seed, final=8, genotype="g", **kw)
    text = _report(root, tmp_path / "out")
    assert "minatar/breakout (ppo): no evaluation before training" in text
    assert "eval.at_start=True" in text


def test_dmc_sac_runs_are_drawn_against_frames_without_procgen_levels(tmp_path):
    # DM-Control budgets are env frames: DrQ / PlaNet repeat each cartpole action 8
    # times (Kostrikov et al. 2020, Table 1), so 4,000 agent steps are 32,000 frames.
    def returns(agent, game, seed):
        return {"baseline": 10, "search": 5, "cell": 8, "milestone": 4, "random": [2, 3]}

    game = "dmc/cartpole_swingup"
    root = str(tmp_path / "runs")
    for seed in (0, 1):
        _unit(root, "sac", game, seed, returns("sac", game, seed))
    text = _report(root, tmp_path / "out")
    assert "env frames (action repeat 8)" in text  # the claims curves' axis
    budgets = text.split(f"## {report.SECTIONS[0]}")[1].split("## ")[0]
    assert "WARNING" not in budgets  # the 25M-step protocol is Procgen's
    assert "| - | - |" in budgets  # no levels, no distribution mode
    assert "evaluation episodes on fresh env seeds" in text
    assert formatting.x_axis(game) == (8, "env frames (action repeat 8)")
    assert formatting.x_axis("minatar/breakout") == (1, "env steps")
