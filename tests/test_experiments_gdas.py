"""GDAS (arch.method=gdas) end to end on real Procgen with the `smoke` preset: a PPO
search, exact resume of it (architecture draws included), a retrain from the genotype
file alone, and a second-order (arch.mode=unrolled) DQN search. (PC-DARTS:
tests/test_experiments_pc_darts.py; one file per pytest worker.)"""

import json
import shutil

import numpy as np
import pytest
from _binaries import SEARCH, TRAIN, run_binary

from rldarts.model.genotypes import NetworkGenotype
from rldarts.run.logger import read_metrics


@pytest.fixture(scope="module")
def gdas_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gdas")
    run_binary("search", SEARCH, workdir, "--config.arch.method=gdas")
    return workdir


def test_gdas_search_records_its_method_and_moves_the_alphas(gdas_dir):
    rows = read_metrics(gdas_dir / "metrics.csv")
    assert [r["env_steps"] for r in rows] == [256, 512, 768]
    # The Gumbel temperature anneals from 10 to 0.1 over the 3 iterations.
    np.testing.assert_allclose(
        [1 / r["inverse_temperature"] for r in rows], [10.0, 5.05, 0.1], rtol=1e-4
    )
    assert all(r["alpha_grad_norm"] > 0 for r in rows)
    genotype = NetworkGenotype.load(str(gdas_dir / "genotype.json"))
    assert genotype.found_with.method == "gdas"
    alphas = [json.loads(ln) for ln in open(gdas_dir / "alpha_history.jsonl")]
    assert np.abs(np.asarray(alphas[-1]["alphas"]["normal"][1])).max() > 1e-4


def test_gdas_search_resumes_exactly(gdas_dir, tmp_path):
    """A copy of the finished run without its last checkpoint is the run killed after
    iteration 2; the same command resumes it (same horizon, so the same Gumbel
    temperatures) and must redo iteration 3 exactly, architecture draws included."""
    work = tmp_path / "run"
    shutil.copytree(gdas_dir, work)
    shutil.rmtree(work / "checkpoints" / "3")
    proc = run_binary("search", SEARCH, work, "--config.arch.method=gdas")
    assert "resuming" in proc.stdout + proc.stderr
    resumed, straight = read_metrics(work / "metrics.csv"), read_metrics(gdas_dir / "metrics.csv")
    assert [r["env_steps"] for r in resumed] == [256, 512, 768]
    for key in ("loss", "policy_loss", "alpha_entropy", "alpha_grad_norm", "episode_return_test"):
        assert resumed[-1][key] == straight[-1][key], (key, resumed[-1][key], straight[-1][key])
    last = lambda d: json.loads(open(d / "alpha_history.jsonl").readlines()[-1])
    np.testing.assert_array_equal(
        np.asarray(last(work)["alphas"]["normal"][1]),
        np.asarray(last(gdas_dir)["alphas"]["normal"][1]),
    )


def test_gdas_genotype_retrains_from_its_file_alone(gdas_dir, tmp_path):
    run_binary("train", TRAIN, tmp_path, f"--config.genotype={gdas_dir / 'genotype.json'}")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["network"] == "darts_standard"
    assert len(read_metrics(tmp_path / "metrics.csv")) == 3


def test_dqn_unrolled_gdas_search(tmp_path):
    """DQN draws one architecture per learner step; unrolled = second-order DARTS."""
    run_binary(
        "search",
        SEARCH,
        tmp_path,
        "--config.agent=dqn",
        "--config.arch.method=gdas",
        "--config.arch.mode=unrolled",
    )
    rows = read_metrics(tmp_path / "metrics.csv")
    assert rows[-1]["learner_steps"] > 0 and rows[-1]["alpha_grad_norm"] > 0
    assert "episode_return_heldout" in rows[0]  # held-out envs feed the alpha step
    assert NetworkGenotype.load(str(tmp_path / "genotype.json")).found_with.method == "gdas"
