"""The MinAtar protocols (minatar_quick, minatar_claims): what they expand into."""

import collections
import os
import sys

import pytest
from _binaries import load_sweep_module

from experiments.configs import base, protocol
from experiments.configs.protocol import get_protocol
from launch import plan

sweep = load_sweep_module()


def _argv_value(run, flag):
    return next(a.split("=", 1)[1] for a in run.argv if a.startswith(f"--config.{flag}="))


def test_minatar_quick(tmp_path):
    proto = get_protocol("minatar_quick")
    runs = sweep.expand(proto, str(tmp_path))
    kinds = collections.Counter(r.kind for r in runs)
    # 2 games x 2 seeds x (search, retrain, baseline, 2 random, 1 milestone)
    assert kinds == {
        "search": 4,
        "retrain": 4,
        "minatar_cnn": 4,
        "random": 8,
        "milestone": 4,
    }
    assert {r.game for r in runs} == {"minatar/breakout", "minatar/space_invaders"}
    assert {r.agent for r in runs} == {"ppo"}
    assert {r.argv[3].rsplit(":", 1)[1] for r in runs} == {"minatar_smoke"}
    nets = {r.kind: {_argv_value(r, "network")} for r in runs}
    assert nets["minatar_cnn"] == {"minatar_cnn"}
    assert nets["search"] == nets["retrain"] == nets["random"] == {"darts_minatar"}
    assert {r.argv[2] for r in runs if r.kind == "minatar_cnn"} == {"experiments.train"}
    budget = base.build("minatar_smoke").total_env_steps
    assert {r.total_env_steps for r in runs} == {budget}
    b = next(r for r in runs if r.kind == "minatar_cnn" and r.seed == 1)
    assert os.path.relpath(b.workdir, tmp_path) == "minatar_cnn/minatar_breakout/seed1"
    assert "--config.env_name=minatar/breakout" in b.argv
    m = next(r for r in runs if r.kind == "milestone")
    assert m.genotype == str(
        tmp_path / "milestone_genotypes/minatar_breakout/seed0/m0.5/genotype.json"
    )
    assert proto["baselines"]["random"]["network"] == "darts_minatar"


def test_minatar_claims_runs_every_game_seed_and_agent(tmp_path):
    proto = get_protocol("minatar_claims")
    runs = sweep.expand(proto, str(tmp_path))
    assert len(proto["games"]) == 5 and len(proto["seeds"]) >= 5
    per_unit = 3 + proto["baselines"]["random"]["num_samples"] + len(proto["milestones"])
    assert len(runs) == 2 * 5 * len(proto["seeds"]) * per_unit
    assert proto["baselines"]["random"]["num_samples"] >= 4
    by_agent = collections.Counter(r.agent for r in runs)
    assert by_agent == {"ppo": len(runs) // 2, "dqn": len(runs) // 2}
    assert all(f"--config.agent={r.agent}" in r.argv for r in runs)
    assert {r.total_env_steps for r in runs} == {65_536}
    # The settings that learn in that budget are on every command line, after the preset.
    assert all("--config.ppo.num_steps=32" in r.argv for r in runs)
    assert all(r.argv.index("--config.dqn.learning_rate=0.0003") > 3 for r in runs)
    # Unit by unit: the first unit is seed 0 of the first game, both agents, search first.
    first = runs[: 2 * per_unit]
    assert {(r.game, r.seed) for r in first} == {("minatar/breakout", 0)}
    assert [r.agent for r in first] == ["ppo"] * per_unit + ["dqn"] * per_unit
    assert first[0].kind == "search" and runs[2 * per_unit].game == "minatar/asterix"
    assert {_argv_value(r, "network") for r in runs if r.kind == "minatar_cnn"} == {"minatar_cnn"}
    # Every run has its own workdir, 4 folders deep (the report's search depth).
    assert len({r.workdir for r in runs}) == len(runs)
    assert max(len(os.path.relpath(r.workdir, tmp_path).split(os.sep)) for r in runs) == 4
    dqn_retrain = next(r for r in runs if r.kind == "retrain" and r.agent == "dqn")
    assert dqn_retrain.after == str(tmp_path / "search_dqn/minatar_breakout/seed0")
    dqn_m = next(r for r in runs if r.kind == "milestone" and r.agent == "dqn")
    assert "milestone_genotypes_dqn" in dqn_m.genotype
    # One set of random genotypes for both agents (paired comparisons).
    assert {r.genotype for r in runs if r.kind == "random" and r.sample == 3} == {
        str(tmp_path / "random_genotypes/random_003/genotype.json")
    }


def test_agent_override_narrows_to_one_agent_in_the_whole_sweeps_folders(tmp_path):
    narrowed = sweep.expand(get_protocol("minatar_claims", agent="dqn"), str(tmp_path))
    assert {r.agent for r in narrowed} == {"dqn"}
    assert {os.path.relpath(r.workdir, tmp_path).split(os.sep)[0] for r in narrowed} == {
        "search_dqn",
        "retrain_dqn",
        "minatar_cnn_dqn",
        "random_dqn",
        "milestone_dqn",
    }
    # The same runs, workdirs and command lines as the whole sweep's DQN runs: a sweep
    # narrowed to one agent can be completed later in the same root.
    whole = sweep.expand(get_protocol("minatar_claims"), str(tmp_path))
    as_tuple = lambda r: (r.workdir, tuple(r.argv), r.after, r.genotype)
    assert [as_tuple(r) for r in narrowed] == [as_tuple(r) for r in whole if r.agent == "dqn"]


def test_a_misspelt_protocol_override_is_refused():
    with pytest.raises(ValueError, match="ppo.num_stepz=32: no such config key"):
        protocol._runs(
            "minatar_smoke", None, "darts_minatar", 1, 0, overrides={"ppo.num_stepz": 32}
        )


def test_foreign_agent_check_is_per_run(tmp_path):
    proto = get_protocol("minatar_claims")
    runs = sweep.expand(proto, str(tmp_path))
    ppo = next(r for r in runs if r.agent == "ppo")
    os.makedirs(ppo.workdir)
    with open(os.path.join(ppo.workdir, "config.json"), "w") as f:
        f.write('{"agent": "ppo"}')
    assert plan.foreign_agent_runs(runs) == []
    with open(os.path.join(ppo.workdir, "config.json"), "w") as f:
        f.write('{"agent": "dqn"}')
    assert plan.foreign_agent_runs(runs) == [f"{ppo.workdir} (dqn)"]


def test_dry_run_of_minatar_quick(tmp_path):
    lines = []
    sweep.sweep(get_protocol("minatar_quick"), str(tmp_path), dry_run=True, log=lines.append)
    commands = [ln for ln in lines if ln.startswith(sys.executable)]
    assert len(commands) == 24
    assert any("--config.network=minatar_cnn" in c for c in commands)
