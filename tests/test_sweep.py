"""launch/sweep.py: protocol expansion, dry run, skipping finished runs, missing genotypes."""
import os
import subprocess
import sys

import pytest

from _binaries import ROOT, load_sweep_module
from experiments.configs import base
from experiments.configs.protocol import get_protocol
from rldarts import procgen_scores
from rldarts.genotypes import NetworkGenotype

sweep = load_sweep_module()

BUDGET = base.build("cpu_demo").total_env_steps


def test_protocols():
    small = get_protocol("cpu_small")
    assert small["games"] == ["starpilot"] and small["seeds"] == [0, 1]
    assert small["search"]["preset"] == "cpu_demo"
    assert small["retrain"]["config"] == "experiments/configs/train.py"
    assert small["baselines"]["random"]["num_samples"] == 2
    assert small["search"]["total_env_steps"] == BUDGET
    paper = get_protocol("paper")
    assert sorted(paper["games"]) == sorted(procgen_scores.load())
    assert len(paper["games"]) == 16 and paper["seeds"] == [0, 1, 2]
    assert {paper[k]["total_env_steps"] for k in ("search", "retrain")} == {25_000_000}
    assert paper["baselines"]["impala"]["total_env_steps"] == 25_000_000
    assert paper["baselines"]["random"]["num_samples"] == 10
    with pytest.raises(ValueError, match="cpu_small"):
        get_protocol("nope")


def test_expansion_order_and_commands(tmp_path):
    runs = sweep.expand(get_protocol("cpu_small"), str(tmp_path))
    got = [(r.kind, r.game, r.seed, os.path.relpath(r.workdir, tmp_path)) for r in runs]
    assert got == [
        ("search", "starpilot", 0, "search/starpilot/seed0"),
        ("search", "starpilot", 1, "search/starpilot/seed1"),
        ("retrain", "starpilot", 0, "retrain/starpilot/seed0"),
        ("retrain", "starpilot", 1, "retrain/starpilot/seed1"),
        ("impala", "starpilot", 0, "impala/starpilot/seed0"),
        ("impala", "starpilot", 1, "impala/starpilot/seed1"),
        ("random", "starpilot", 0, "random/starpilot/seed0/random_000"),
        ("random", "starpilot", 0, "random/starpilot/seed0/random_001"),
        ("random", "starpilot", 1, "random/starpilot/seed1/random_000"),
        ("random", "starpilot", 1, "random/starpilot/seed1/random_001"),
    ]
    common = ["--config.env_name=starpilot", f"--config.total_env_steps={BUDGET}",
              "--config.agent=ppo"]
    search, retrain, impala, rnd = runs[1], runs[3], runs[4], runs[7]
    assert search.argv[:4] == [sys.executable, "-m", "experiments.search",
                               "--config=experiments/configs/search.py:cpu_demo"]
    assert set(common + [f"--workdir={search.workdir}", "--config.seed=1",
                         "--config.network=darts_standard"]) <= set(search.argv)
    assert retrain.argv[2:4] == ["experiments.train",
                                 "--config=experiments/configs/train.py:cpu_demo"]
    assert f"--config.genotype={tmp_path}/search/starpilot/seed1/genotype.json" in retrain.argv
    assert "--config.network=darts_standard" in retrain.argv
    assert "--config.network=impala" in impala.argv
    assert not any(a.startswith("--config.genotype") for a in impala.argv)
    assert (f"--config.genotype={tmp_path}/random_genotypes/random_001/genotype.json"
            in rnd.argv)
    assert len(sweep.expand(get_protocol("paper"), str(tmp_path))) == 16 * 3 * (3 + 10)


def _fake_run(workdir, env_steps, iteration, checkpoint=True):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "metrics.csv"), "w") as f:
        f.write("env_steps,iteration,loss\n")
        f.write(f"{env_steps // 2},{iteration // 2},0.5\n{env_steps},{iteration},0.4\n")
    if checkpoint:
        os.makedirs(os.path.join(workdir, "checkpoints", str(iteration)))


def test_dry_run_prints_commands_and_skips_finished_runs(tmp_path):
    iters = BUDGET // (32 * 64)
    _fake_run(tmp_path / "search/starpilot/seed0", BUDGET, iters)  # finished
    _fake_run(tmp_path / "search/starpilot/seed1", BUDGET - 2048, iters - 1)  # interrupted
    _fake_run(tmp_path / "impala/starpilot/seed0", BUDGET, iters, checkpoint=False)
    lines = []
    out = sweep.sweep(get_protocol("cpu_small"), str(tmp_path), dry_run=True,
                      log=lines.append)
    assert out["skipped"] == [str(tmp_path / "search/starpilot/seed0")]
    assert lines[0].startswith("# skip (finished")
    commands = [line for line in lines if not line.startswith("#")]
    assert len(commands) == 9
    assert "--workdir=" + str(tmp_path / "search/starpilot/seed1") in commands[0]
    assert "--workdir=" + str(tmp_path / "impala/starpilot/seed0") in commands[3]
    assert lines[6].startswith("# write 2 random genotypes")
    assert not (tmp_path / "random_genotypes").exists()  # a dry run writes nothing
    assert sweep.is_finished(str(tmp_path / "search/starpilot/seed0"), BUDGET)
    assert not sweep.is_finished(str(tmp_path / "search/starpilot/seed0"), BUDGET + 1)
    assert not sweep.is_finished(str(tmp_path / "nothing"), BUDGET)


def test_run_skips_retrain_without_genotype_and_writes_random_genotypes(tmp_path):
    protocol = get_protocol("cpu_small")
    genotype_text = open(sweep.write_random(protocol, str(tmp_path / "other"))[0]).read()
    calls = []

    def runner(argv, cwd):  # stands in for the binaries
        assert cwd == ROOT
        calls.append(argv)
        workdir = next(a.split("=", 1)[1] for a in argv if a.startswith("--workdir="))
        if workdir.endswith("search/starpilot/seed1"):
            return subprocess.CompletedProcess(argv, 1)  # this search fails
        if "/search/" in workdir:  # a search leaves its genotype
            os.makedirs(workdir)
            with open(os.path.join(workdir, "genotype.json"), "w") as f:
                f.write(genotype_text)
        return subprocess.CompletedProcess(argv, 0)

    lines = []
    out = sweep.sweep(protocol, str(tmp_path / "root"), log=lines.append, runner=runner)
    assert [a[2] for a in calls] == ["experiments.search"] * 2 + ["experiments.train"] * 7
    root = tmp_path / "root"
    assert out["failed"] == [str(root / "search/starpilot/seed1")]
    assert out["skipped"] == [str(root / "retrain/starpilot/seed1")]
    assert len(out["ran"]) == 8
    assert any("no genotype" in line and "retrain/starpilot/seed1" in line for line in lines)
    for i in range(2):
        g = NetworkGenotype.load(str(root / f"random_genotypes/random_{i:03d}/genotype.json"))
        assert set(g.cells) == {"normal", "reduction"}
        # Made from the protocol's config: the file alone rebuilds the trained network.
        demo = base.build("cpu_demo")
        assert g.found_with.method == "random" and g.found_with.network == "darts_standard"
        assert (g.found_with.depths, g.found_with.dense, g.found_with.first_conv) == (
            tuple(demo.net.depths), demo.net.dense, demo.net.first_conv)
