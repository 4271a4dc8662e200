"""DM-Control with SAC end to end through the binaries: a smoke search on
dmc/cartpole_swingup, a retrain from its genotype.json alone and the report over both,
and a search interrupted
after one iteration and resumed that makes the uninterrupted run's rows exactly (replay,
random seed steps, SAC state and envs all resume)."""

import json
import pathlib

import numpy as np
import pytest

from rldarts.report import writer as report
from rldarts.run.logger import read_metrics
from tests._binaries import run_binary

SEARCH = "--config=experiments/configs/search.py:dmc_smoke"
TRAIN = "--config=experiments/configs/train.py:dmc_smoke"


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dmc_search")
    run_binary("search", SEARCH, workdir)
    return workdir


def test_search_then_retrain_from_the_genotype_file_alone(search_dir, tmp_path):
    config = json.loads((search_dir / "config.json").read_text())
    assert config["network"] == "darts_dmc" and config["agent"] == "sac"
    genotype = json.loads((search_dir / "genotype.json").read_text())
    assert sorted(genotype["cells"]) == ["normal"]
    assert genotype["found_with"]["network"] == "darts_dmc"
    rows = read_metrics(search_dir / "metrics.csv")
    assert [r["env_steps"] for r in rows] == [0, 32, 64, 96]  # 0: eval.at_start
    assert rows[-1]["learner_steps"] > 0 and np.isfinite(rows[-1]["critic_loss"])
    assert rows[-1]["alpha_grad_norm"] > 0 and rows[-1]["episode_return_test"] is not None
    assert (search_dir / "alpha_history.jsonl").exists()
    run_binary("train", TRAIN, tmp_path, f"--config.genotype={search_dir / 'genotype.json'}")
    retrained = json.loads((tmp_path / "config.json").read_text())
    assert retrained["network"] == "darts_dmc" and retrained["net"] == config["net"]
    assert retrained["arch"]["mode"] == "frozen"
    assert len(read_metrics(tmp_path / "metrics.csv")) == 4
    # The report over the two SAC runs: the search's alphas and cell, both curves.
    out = tmp_path.parent / f"{tmp_path.name}_report"
    text = pathlib.Path(report.write_report([str(search_dir), str(tmp_path)], str(out))).read_text()
    assert "(dmc/cartpole_swingup, sac, seed 0, arch.mode joint)" in text  # alphas
    assert (out / "curves_dmc_cartpole_swingup.png").exists()
    assert any(p.name.startswith("alphas_") for p in out.iterdir())
    assert "| - | - |" in text  # no levels, no distribution mode: not Procgen's "?"


def test_search_resume_matches_uninterrupted(search_dir, tmp_path):
    run_binary("search", SEARCH, tmp_path, "--config.total_env_steps=64")
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("replay_*"))
    proc = run_binary("search", SEARCH, tmp_path)  # same command, the preset's budget
    assert "resuming" in proc.stdout + proc.stderr
    resumed = read_metrics(tmp_path / "metrics.csv")
    straight = read_metrics(search_dir / "metrics.csv")
    assert [r["env_steps"] for r in resumed] == [0, 32, 64, 96]
    for a, b in zip(resumed, straight):
        for key in ("critic_loss", "actor_loss", "temperature", "alpha_entropy", "q_mean"):
            assert a.get(key) == b.get(key), (key, a.get(key), b.get(key))
    assert resumed[-1]["episode_return_test"] == straight[-1]["episode_return_test"]
