"""rldarts.report / experiments.report on hand-written workdirs (no training runs)."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from rldarts.model.genotypes import CellGenotype, NetworkGenotype
from rldarts.report import writer as report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 512  # env steps per iteration; evaluation every 2nd iteration; 8 iterations
TOTAL = 8 * STEPS
RMIN, RMAX = 2.5, 64.0  # starpilot, Procgen paper easy-mode table


def _genotype(op):
    cell = CellGenotype(nodes=(((0, op),), ((0, "SkipConnection"), (1, "Conv3x3Relu"))))
    return NetworkGenotype({"normal": cell, "reduction": cell})


def _write_run(
    path,
    *,
    network="darts_standard",
    genotype="",
    seed=0,
    game="starpilot",
    train=(),
    test=(),
    alphas=False,
    marker=None,
    own_genotype=None,
    agent="ppo",
):
    """A workdir as the driver leaves it: row i (1-based) at i * STEPS env steps, test
    returns on even rows (in order), train returns on every row (None = no episode)."""
    os.makedirs(path)
    config = {
        "env_name": game,
        "seed": seed,
        "network": network,
        "genotype": genotype,
        "agent": agent,
        "total_env_steps": TOTAL,
        "num_levels": 200,
        "distribution_mode": "easy",
        "arch": {"mode": "joint"},
        "ppo": {"num_steps": 32, "update_epochs": 1, "num_envs": 16},
        "net": {"depths": [4, 8], "dense": 32, "num_nodes": 2, "search_space": "conv3x3_only"},
    }
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    cols = ["env_steps", "episode_return_train", "loss", "episode_return_test"]
    cols += ["alpha_entropy_normal", "alpha_entropy_reduction", "alpha_entropy"] if alphas else []
    tests = iter(test)
    with open(os.path.join(path, "metrics.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i, tr in enumerate(train, start=1):
            row = [i * STEPS, "" if tr is None else tr, 0.5, next(tests) if i % 2 == 0 else ""]
            w.writerow(row + ([1.0 - 0.1 * i] * 3 if alphas else []))
    if alphas:
        with open(os.path.join(path, "alpha_history.jsonl"), "w") as f:
            for i in range(1, len(train) + 1):
                node = lambda k: [[0.1 * i * (j + 1), 0.0, -0.1 * i] for j in range(k)]
                cells = {"normal": [node(1), node(2)], "reduction": [node(1), node(2)]}
                f.write(json.dumps({"env_steps": i * STEPS, "alphas": cells}) + "\n")
    if own_genotype is not None:
        with open(os.path.join(path, "genotype.json"), "w") as f:
            f.write(own_genotype.to_json())
    if marker is not None:
        with open(os.path.join(path, "random_search.json"), "w") as f:
            json.dump(marker, f)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """2 seeds x {search, darts cell (seed 1 partial), impala}, 2 random cells, 1 coinrun
    impala run; nested at depths 1-3, plus a decoy at depth 4 and a broken workdir."""
    root = str(tmp_path_factory.mktemp("runs"))
    j = lambda *p: os.path.join(root, *p)
    train8 = [1, None, 3, 4, 5, 6, 7, 8]
    for s in (0, 1):
        _write_run(
            j("search", f"s{s}"),
            seed=s,
            train=train8,
            test=[1, 2, 3, 4 + s],
            alphas=True,
            own_genotype=_genotype("Conv3x3Relu"),
        )
        _write_run(
            j("impala", "group", f"s{s}"),
            network="impala",
            seed=s,
            train=[0, 0, 0, 24 + 2 * s, 0, 30 + 2 * s, 0, 36 + 2 * s],
            test=[[5, 10, 20, 30], [6, 12, 22, 32]][s],
        )
    geno = j("search", "s0", "genotype.json")
    _write_run(j("cells", "s0"), genotype=geno, seed=0, train=train8, test=[8, 16, 24, 40])
    _write_run(j("cells", "s1"), genotype=geno, seed=1, train=train8[:6], test=[10, 20, 30])
    for k, (op, final) in enumerate((("SkipConnection", 12), ("Conv3x3Relu", 18))):
        g = _genotype(op)
        _write_run(
            j("random", f"sample{k}"),
            genotype="genotype.json",
            seed=0,
            train=train8,
            test=[1, 1, final, final],
            own_genotype=g,
            marker={"sample_index": k, "genotype": json.loads(g.to_json())},
        )
    _write_run(
        j("other", "a", "coinrun"),
        network="impala",
        game="coinrun",
        train=[6] * 8,
        test=[6, 7, 7.5, 8],
    )
    _write_run(j("other", "a", "b", "c", "too_deep"), network="impala", train=[1] * 8, test=[1] * 4)
    os.makedirs(j("broken"))
    for name in ("config.json", "metrics.csv"):
        with open(j("broken", name), "w") as f:
            f.write("{not json")
    return root


@pytest.fixture(scope="module")
def report_text(runs_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("out"))
    path = report.write_report([runs_root], out)
    assert path == os.path.join(out, "report.md")
    with open(path) as f:
        return out, f.read()


def _table_row(text, game, label):
    section = text.split(f"## {report.SECTIONS[4]}")[1].split(f"### {game}\n")[1]
    line = next(ln for ln in section.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_discovery_depth_and_methods(runs_root):
    runs, skipped = report.discover_runs([runs_root])
    names = {os.path.relpath(r.path, runs_root): r.method for r in runs}
    assert len(runs) == 9 and not any("too_deep" in n for n in names)
    assert names[os.path.join("search", "s0")] == "search"
    assert names[os.path.join("cells", "s1")] == "darts cell"
    assert names[os.path.join("random", "sample1")] == "random cell"
    assert names[os.path.join("impala", "group", "s0")] == "impala"
    assert len(skipped) == 1 and "broken" in skipped[0]


def test_report_sections_figures_and_flags(report_text, runs_root):
    out, text = report_text
    # Paths relative to the report (it is read on other machines): no absolute run path.
    assert runs_root not in text
    assert f"Runs from: {os.path.relpath(runs_root, out)} (9 workdirs" in text
    assert f"- {os.path.basename(runs_root)}/broken: unreadable run files" in text
    for title in report.SECTIONS:
        assert f"## {title}" in text
    assert "**WARNING" in text and "NOT a reproduction" in text
    partial = [ln for ln in text.splitlines() if "**partial**" in ln]
    assert len(partial) == 1 and os.path.join("cells", "s1") in partial[0]
    assert "4,096 / 4,096" in text and "3,072 / 4,096" in text
    pngs = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert {
        "curves_starpilot.png",
        "curves_coinrun.png",
        "cell1_normal.png",
        "cell1_reduction.png",
        "darts_vs_random_starpilot_ppo.png",
    } <= set(pngs)
    assert sum(p.startswith("alphas_") for p in pngs) == 2
    for p in pngs:
        with Image.open(os.path.join(out, p)) as im:
            im.verify()
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    assert "sample 1 (" in text and "Procgen paper, easy mode" in text


def test_report_scores_match_hand_computation(report_text):
    _, text = report_text
    norm = lambda r: f"{(r - RMIN) / (RMAX - RMIN):.3f}"
    # impala: finals = mean of last 3 evals: test (10+20+30)/3=20, (12+22+32)/3=22 -> 21;
    # train on those rows: (24+30+36)/3=30, 32 -> 31
    row = _table_row(text, "starpilot", "impala (ppo)")
    assert row[1:] == ["2 of 2", "0", "31.00", "21.00", norm(31), norm(21)]
    # darts cell: seed 0 (16+24+40)/3, partial seed 1 (10+20+30)/3 -> mean 70/3
    row = _table_row(text, "starpilot", "darts cell (ppo)")
    assert row[2] == "1" and row[4] == "23.33" and row[6] == norm(70 / 3)
    row = _table_row(text, "starpilot", "published PPO + IMPALA-CNN")
    assert row[3:] == ["30.62 +- 3.06", "23.53 +- 1.73", norm(30.62), norm(23.53)]
    coin = _table_row(text, "coinrun", "impala (ppo)")  # [5, 10]: (7+7.5+8)/3 = 7.5 -> 0.5
    assert coin[4] == "7.50" and coin[6] == "0.500"
    agg = text.split("### Aggregate across games")[1]
    line = next(ln for ln in agg.splitlines() if ln.startswith("| impala (ppo) | test |"))
    # pooled runs: starpilot 20, 22 and coinrun 7.5 -> normalised scores
    scores = sorted([(20 - RMIN) / 61.5, (22 - RMIN) / 61.5, 0.5])
    assert f"| 3 | {sum(scores) / 3:.3f} [" in line
    assert f"| {(scores[0] + 4 * scores[1] + scores[2]) / 6:.3f} [" in line


def test_darts_vs_random_budget(report_text):
    _, text = report_text
    section = text.split(f"## {report.SECTIONS[5]}")[1]
    # DARTS: search s0 (4,096) counted once + retrains 4,096 + 3,072 = 11,264; best final
    # test: seed 0 (16+24+40)/3; train on eval rows 4, 6, 8 of seed 0: (4+6+8)/3 = 6.
    # Random: 2 x 4,096; best test: sample 1 (1+18+18)/3.
    lines = section.splitlines()
    assert "| DARTS | 2 | 11,264 | 6.00 | 26.67 |" in lines
    assert "| random search | 2 | 8,192 | 6.00 | 12.33 |" in lines


def test_empty_and_no_random(tmp_path):
    os.makedirs(tmp_path / "runs")
    path = report.write_report([str(tmp_path / "runs")], str(tmp_path / "out"))
    text = open(path).read()
    for title in report.SECTIONS:
        assert f"## {title}" in text
    assert "no random-search runs found" in text.lower()
    assert "No runs found" in text and "No search runs found" in text
    with pytest.raises(ValueError, match="not a directory"):
        report.write_report([str(tmp_path / "missing")], str(tmp_path / "out"))


def test_binary(runs_root, tmp_path):
    out = tmp_path / "out"
    runs = ",".join([os.path.join(runs_root, "impala"), os.path.join(runs_root, "cells", "s0")])
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.report", f"--runs={runs}", f"--out={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    text = (out / "report.md").read_text()
    assert all(f"## {t}" in text for t in report.SECTIONS)
    assert "no random-search runs found" in text.lower()
    assert "impala (ppo)" in text and "darts cell (ppo)" in text
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.report"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "--runs" in proc.stderr


def test_sweep_layout_is_found_and_labelled(tmp_path):
    """The report reads what launch/sweep.py lays out: random runs 4 folders deep whose
    random_search.json sits beside the shared genotype file, not in the workdir."""
    from _binaries import load_sweep_module

    from experiments.configs import protocol as protocols

    sweep = load_sweep_module()

    proto = protocols.get_protocol("cpu_small")
    root = str(tmp_path / "sweep")
    sweep.write_random(proto, root)
    runs = sweep.expand(proto, root)
    for r in runs:
        genotype = r.genotype if r.kind == "random" else ""
        _write_run(
            r.workdir,
            network="impala" if r.kind == "impala" else "darts_standard",
            genotype=genotype,
            seed=r.seed,
            train=[1] * 8,
            test=[1, 2, 3, 4],
        )
    found, skipped = report.discover_runs([root])
    by_kind = {}
    for run in found:
        by_kind.setdefault(os.path.relpath(run.path, root).split(os.sep)[0], set()).add(run.method)
    assert not skipped and len(found) == len(runs)
    assert by_kind["random"] == {"random cell"}
    assert by_kind["impala"] == {"impala"}


def _milestone_run(root, game, seed, fraction, final, agent="ppo", env_steps=None):
    """A milestone retrain as launch/sweep.py lays it out: the genotype and its
    milestone.json under ROOT/milestone_genotypes, the workdir pointing at it."""
    gdir = os.path.join(root, "milestone_genotypes", agent, game, f"seed{seed}", f"m{fraction}")
    os.makedirs(gdir)
    g = _genotype("Conv3x3Relu" if fraction == 1.0 else "SkipConnection")
    with open(os.path.join(gdir, "genotype.json"), "w") as f:
        f.write(g.to_json())
    with open(os.path.join(gdir, "milestone.json"), "w") as f:
        json.dump(
            {
                "fraction": fraction,
                "env_steps": env_steps or int(fraction * TOTAL),
                "genotype": json.loads(g.to_json()),
            },
            f,
        )
    kind = "milestone" if agent == "ppo" else f"milestone_{agent}"  # 4 deep, as the sweep's
    _write_run(
        os.path.join(root, kind, game, f"seed{seed}", f"m{fraction}"),
        genotype=os.path.join(gdir, "genotype.json"),
        seed=seed,
        game=game,
        agent=agent,
        train=[1] * 8,
        test=[0, final, final, final],
    )


@pytest.fixture(scope="module")
def milestone_text(tmp_path_factory):
    """starpilot ppo: milestones 0.5 (seeds 10, 20) and 1.0 (30, 50), final retrain 40,
    40, IMPALA 20, 22; coinrun ppo: 0.5 -> 7.5, 1.0 -> 10, IMPALA 5; starpilot dqn:
    0.5 -> 3 (test returns, each the run's final)."""
    root = str(tmp_path_factory.mktemp("mruns"))
    for seed, (half, full) in enumerate(((10, 30), (20, 50))):
        _milestone_run(root, "starpilot", seed, 0.5, half, env_steps=1536)
        _milestone_run(root, "starpilot", seed, 1.0, full)
        _write_run(
            os.path.join(root, "retrain", f"s{seed}"),
            genotype="genotype.json",
            own_genotype=_genotype("Conv3x3Relu"),
            seed=seed,
            train=[1] * 8,
            test=[0, 40, 40, 40],
        )
        _write_run(
            os.path.join(root, "impala", f"s{seed}"),
            network="impala",
            seed=seed,
            train=[1] * 8,
            test=[0, 20 + 2 * seed] + [20 + 2 * seed] * 2,
        )
    _milestone_run(root, "coinrun", 0, 0.5, 7.5)
    _milestone_run(root, "coinrun", 0, 1.0, 10)
    _write_run(
        os.path.join(root, "impala_coinrun"),
        network="impala",
        game="coinrun",
        train=[1] * 8,
        test=[5] * 4,
    )
    _milestone_run(root, "starpilot", 0, 0.5, 3, agent="dqn")
    out = str(tmp_path_factory.mktemp("mout"))
    with open(report.write_report([root], out)) as f:
        return out, root, f.read()


def _rows(text, heading):
    part = text.split(f"## {report.SECTIONS[6]}")[1].split(f"{heading}\n")[1]
    part = part.split("\n#")[0]  # up to the next heading
    return {
        ln.split("|")[1].strip() + ("/" + ln.split("|")[2].strip() if "levels" in part else ""): [
            c.strip() for c in ln.strip("|").split("|")
        ]
        for ln in part.splitlines()
        if ln.startswith("| ") and not ln.startswith("| cell")
    }


def test_milestone_runs_are_found_and_labelled(milestone_text):
    _, root, _ = milestone_text
    runs, skipped = report.discover_runs([root])
    labels = sorted(r.label for r in runs if r.method == "milestone cell")
    assert not skipped and labels == sorted(
        ["milestone cell @0.5 (ppo)"] * 3
        + ["milestone cell @1 (ppo)"] * 3
        + ["milestone cell @0.5 (dqn)"]
    )
    m = next(r for r in runs if r.label == "milestone cell @1 (ppo)")
    assert m.genotype == _genotype("Conv3x3Relu") and m.fraction == 1.0


def test_milestone_section_matches_hand_computation(milestone_text):
    out, _, text = milestone_text
    norm = lambda r: (r - RMIN) / (RMAX - RMIN)
    rows = _rows(text, "### starpilot (ppo)")
    # 2 seeds: bootstrap means of 2 values take 3 values; the 2.5/97.5% quantiles are the
    # two runs' finals (each resample of both the same value has probability 1/4).
    assert rows["milestone @0.5"][1:4] == ["1,536", "2", "15.00 [10.00, 20.00]"]
    assert rows["milestone @0.5"][4] == f"{norm(15):.3f} [{norm(10):.3f}, {norm(20):.3f}]"
    assert rows["milestone @0.5"][5] == "1.00 [1.00, 1.00]"
    assert rows["milestone @1"][1:4] == [f"{TOTAL:,}", "2", "40.00 [30.00, 50.00]"]
    assert rows["DARTS final retrain"][1:4] == ["end of search", "2", "40.00 [40.00, 40.00]"]
    assert rows["IMPALA"][1:4] == ["-", "2", "21.00 [20.00, 22.00]"]
    section = text.split(f"## {report.SECTIONS[6]}")[1]
    per_game = section.split("### starpilot (ppo)")[1].split("###")[0]
    assert (
        f"DARTS final retrain vs IMPALA, normalised test score (mean): {norm(40):.3f} vs "
        f"{norm(21):.3f}, difference {norm(40) - norm(21):.3f}."
    ) in per_game
    assert "- seed 0: @0.5 cell A, @1 cell B" in per_game
    coin = _rows(text, "### coinrun (ppo)")  # coinrun: [5, 10]
    assert coin["milestone @1"][4] == "1.000 [1.000, 1.000]" and coin["IMPALA"][4].startswith(
        "0.000 ["
    )
    assert coin["DARTS final retrain"][2:] == ["0", "n/a", "n/a", "n/a", "n/a"]
    # Pooled per agent: (game, seed) runs of one milestone together.
    pooled = _rows(text, "#### ppo")
    half = [norm(10), norm(20), 0.5]
    assert pooled["milestone @0.5/test"][2] == "3"
    assert pooled["milestone @0.5/test"][3].startswith(f"{sum(half) / 3:.3f} [")
    iqm = (sorted(half)[0] + 4 * sorted(half)[1] + sorted(half)[2]) / 6
    assert pooled["milestone @0.5/test"][4].startswith(f"{iqm:.3f} [")
    impala = [norm(20), norm(22), 0.0]  # the games with milestones: both
    assert pooled["IMPALA/test"][3].startswith(f"{sum(impala) / 3:.3f} [")
    dqn = _rows(text, "#### dqn")
    assert set(dqn) == {
        "milestone @0.5/test",
        "milestone @0.5/train",
        "DARTS final retrain/test",
        "DARTS final retrain/train",
        "IMPALA/test",
        "IMPALA/train",
    }
    assert dqn["milestone @0.5/test"][2:4] == ["1", f"{norm(3):.3f} [{norm(3):.3f}, {norm(3):.3f}]"]
    assert dqn["IMPALA/test"][2] == "0"  # the ppo IMPALA runs are not dqn's reference
    for png in (
        "milestones_starpilot_ppo.png",
        "milestones_coinrun_ppo.png",
        "milestones_starpilot_dqn.png",
        "milestones_pooled_ppo.png",
        "milestones_pooled_dqn.png",
    ):
        assert f"]({png})" in text
        with Image.open(os.path.join(out, png)) as im:
            im.verify()
    # Agents stay apart in section 5 too.
    assert "| milestone cell @0.5 (dqn) |" in text.split(f"## {report.SECTIONS[4]}")[1]
