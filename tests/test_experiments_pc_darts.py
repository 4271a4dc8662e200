"""PC-DARTS (arch.method=pc_darts) end to end on real Procgen with the `smoke` preset:
a second-order (arch.mode=unrolled) PPO search whose edge weights are trained, logged
and used, a retrain from its genotype file alone, and a DQN search."""

import json

import numpy as np
from _binaries import SEARCH, TRAIN, run_binary

from rldarts.model.genotypes import NetworkGenotype
from rldarts.run.logger import read_metrics


def test_pc_darts_unrolled_search_logs_edge_weights_and_retrains(tmp_path):
    run_binary(
        "search",
        SEARCH,
        tmp_path / "search",
        "--config.arch.method=pc_darts",
        "--config.arch.mode=unrolled",
    )
    rows = read_metrics(tmp_path / "search" / "metrics.csv")
    assert all(r["alpha_grad_norm"] > 0 for r in rows)
    assert "episode_return_heldout" in rows[0]  # held-out envs feed the alpha step
    assert 0 < rows[-1]["edge_weight_entropy"] <= np.log(2) + 1e-6
    assert (tmp_path / "search" / "edge_weight_evolution.png").stat().st_size > 0
    alphas = [json.loads(ln) for ln in open(tmp_path / "search" / "alpha_history.jsonl")]
    betas = np.asarray(alphas[-1]["alphas"]["edge_weights"]["normal"][1])
    assert betas.shape == (2,) and np.abs(betas).max() > 1e-5  # trained like the alphas
    genotype = tmp_path / "search" / "genotype.json"
    assert NetworkGenotype.load(str(genotype)).found_with.method == "pc_darts"
    run_binary("train", TRAIN, tmp_path / "train", f"--config.genotype={genotype}")
    assert len(read_metrics(tmp_path / "train" / "metrics.csv")) == 3


def test_dqn_pc_darts_search(tmp_path):
    run_binary("search", SEARCH, tmp_path, "--config.agent=dqn", "--config.arch.method=pc_darts")
    rows = read_metrics(tmp_path / "metrics.csv")
    assert rows[-1]["learner_steps"] > 0 and rows[-1]["alpha_grad_norm"] > 0
    assert "edge_weight_entropy" in rows[-1]
    genotype = NetworkGenotype.load(str(tmp_path / "genotype.json"))
    assert genotype.found_with.method == "pc_darts"
