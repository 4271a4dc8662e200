"""MinAtar end to end through the binaries: a smoke search, a retrain from its
genotype.json alone, the minatar_cnn baseline with an exact resume and with its rollouts
collected by one jitted scan, DQN, the refusal of
an unknown game, and PPO learning Breakout beyond the random policy."""

import json
import os

import numpy as np
import pytest

from rldarts.run.logger import read_metrics
from tests._binaries import run_binary

SEARCH = "--config=experiments/configs/search.py:minatar_smoke"
TRAIN = "--config=experiments/configs/train.py:minatar_smoke"


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("minatar_search")
    run_binary("search", SEARCH, workdir)
    return workdir


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("minatar_cnn")
    run_binary("train", TRAIN, workdir)
    return workdir


def test_search_then_retrain_from_the_genotype_file_alone(search_dir, tmp_path):
    config = json.loads((search_dir / "config.json").read_text())
    assert config["network"] == "darts_minatar" and config["env_name"] == "minatar/breakout"
    genotype = json.loads((search_dir / "genotype.json").read_text())
    assert sorted(genotype["cells"]) == ["normal"]
    assert genotype["found_with"]["network"] == "darts_minatar"
    rows = read_metrics(search_dir / "metrics.csv")
    # eval.at_start (the minatar presets): the untrained supernet's evaluation comes first.
    assert [r["env_steps"] for r in rows] == [0, 256, 512, 768]
    assert rows[0]["episode_return_test"] is not None and rows[0]["loss"] is None
    assert rows[-1]["episode_return_test"] is not None
    run_binary("train", TRAIN, tmp_path, f"--config.genotype={search_dir / 'genotype.json'}")
    retrained = json.loads((tmp_path / "config.json").read_text())
    assert retrained["network"] == "darts_minatar" and retrained["net"] == config["net"]
    assert len(read_metrics(tmp_path / "metrics.csv")) == 4


def test_baseline_resume_matches_uninterrupted(baseline_dir, tmp_path):
    assert json.loads((baseline_dir / "config.json").read_text())["network"] == "minatar_cnn"
    run_binary("train", TRAIN, tmp_path, "--config.total_env_steps=512")
    proc = run_binary("train", TRAIN, tmp_path)  # same command, the preset's budget
    assert "resuming" in proc.stdout + proc.stderr
    resumed = read_metrics(tmp_path / "metrics.csv")
    straight = read_metrics(baseline_dir / "metrics.csv")
    assert [r["env_steps"] for r in resumed] == [0, 256, 512, 768]  # step 0: not again
    for a, b in zip(resumed, straight):
        for key in ("loss", "policy_loss", "value_loss", "episode_return_train"):
            assert a[key] == b[key], (key, a[key], b[key])
    assert resumed[0]["episode_return_test"] == straight[0]["episode_return_test"]
    assert resumed[-1]["episode_return_test"] == straight[-1]["episode_return_test"]


def test_rollout_scan_run_matches_the_host_loop_run(baseline_dir, tmp_path):
    """The binary's default on MinAtar, ``ppo.rollout_loop=auto`` = scan (acting + gymnax
    steps in one jitted scan), against ``host`` (a Python loop of jitted policy calls and
    env steps): the same episodes, the same updates."""
    run_binary("train", TRAIN, tmp_path, "--config.ppo.rollout_loop=host")
    host = read_metrics(tmp_path / "metrics.csv")
    scanned = read_metrics(baseline_dir / "metrics.csv")
    assert [r["env_steps"] for r in scanned] == [r["env_steps"] for r in host]
    for a, b in zip(scanned, host):
        for key in ("episode_return_train", "episode_length_train", "episode_return_test"):
            assert a.get(key) == b.get(key), (key, a.get(key), b.get(key))
        for key in ("loss", "policy_loss", "value_loss"):
            if b.get(key) is not None:
                assert np.isclose(a[key], b[key], rtol=1e-4, atol=1e-6), (key, a[key], b[key])


def test_dqn_smoke(tmp_path):
    run_binary("train", TRAIN, tmp_path, "--config.agent=dqn")
    rows = read_metrics(tmp_path / "metrics.csv")
    assert len(rows) == 4 and rows[-1]["learner_steps"] > 0
    assert np.isfinite(rows[-1]["loss"]) and rows[-1]["episode_return_test"] is not None


def test_unknown_game_one_line_nothing_written(tmp_path):
    workdir = tmp_path / "w"
    proc = run_binary("search", SEARCH, workdir, "--config.env_name=minatar/pong", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: config env_name: unknown MinAtar game 'minatar/pong'; valid MinAtar "
        "games: minatar/asterix, minatar/breakout, minatar/freeway, minatar/seaquest, "
        "minatar/space_invaders"
    )
    assert not os.path.exists(workdir)


def test_ppo_minatar_cnn_learns_breakout(tmp_path):
    """Random play scores ~0.4 per Breakout episode (the first rows' returns, a near
    uniform policy); measured with these settings: 4.2 after 64k steps, ~3.9 after 49k."""
    run_binary(
        "train",
        "--config=experiments/configs/train.py:minatar",
        tmp_path,
        "--config.total_env_steps=49152",
        "--config.ppo.num_steps=32",
        "--config.ppo.learning_rate=3e-3",
        "--config.eval.every_iterations=24",
        "--config.log.tensorboard=False",
    )
    rows = read_metrics(tmp_path / "metrics.csv")
    assert rows[0]["env_steps"] == 0 and rows[0]["episode_return_test"] < 0.8  # untrained
    assert rows[1]["episode_return_train"] < 0.8
    assert rows[-1]["episode_return_test"] > 1.5, rows[-1]
