"""The binaries end to end on real Procgen: search, retrain, resume, bad input.

Each run uses the `smoke` preset (3 PPO iterations of 8 envs x 32 steps, checkpoints
every 2 iterations).
"""

import json
import os

import numpy as np
import pytest
from _binaries import SEARCH, TRAIN, run_binary

from rldarts.model.genotypes import NetworkGenotype
from rldarts.run.logger import read_metrics


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("search")
    run_binary("search", SEARCH, workdir)
    return workdir


def test_search_workdir_contents(search_dir):
    rows = read_metrics(search_dir / "metrics.csv")
    assert [r["env_steps"] for r in rows] == [256, 512, 768]
    for col in (
        "env_steps",
        "wall_time_s",
        "sps",
        "episode_return_train",
        "policy_loss",
        "value_loss",
        "entropy",
        "alpha_entropy",
        "param_free_share",
    ):
        assert col in rows[0], col
    # Starpilot episodes of an untrained agent last ~75 steps: some end in 96 steps.
    assert any(r["episode_return_train"] is not None for r in rows)
    assert all(r["episode_length_train"] is None or r["episode_length_train"] > 1 for r in rows)
    # Evaluation rows (every 2 iterations and at the end) fill the test return.
    assert [r["episode_return_test"] is not None for r in rows] == [False, True, True]
    # Alphas moved away from their zero start (6 Adam steps of lr 3e-4: ~1e-3).
    assert 0 < np.log(3) - rows[-1]["alpha_entropy"] < 1e-3
    genotype = NetworkGenotype.load(str(search_dir / "genotype.json"))
    assert set(genotype.cells) == {"normal", "reduction"}
    # How it was found: the smoke search's network keys (what a retrain rebuilds).
    found = genotype.found_with
    assert (
        found.method,
        found.network,
        found.search_space,
        found.num_nodes,
        found.output_mode,
        found.first_conv,
        found.depths,
        found.dense,
    ) == ("darts", "darts_standard", "conv3x3_only", 2, "concat_conv", True, (4, 8), 32)
    history = [json.loads(ln) for ln in open(search_dir / "genotype_history.jsonl")]
    assert [h["env_steps"] for h in history] == [256, 512, 768]
    assert all(h["genotype"]["found_with"] == found.to_dict() for h in history)
    alphas = [json.loads(ln) for ln in open(search_dir / "alpha_history.jsonl")]
    assert len(alphas) == 3 and np.asarray(alphas[0]["alphas"]["normal"][1]).shape == (2, 3)
    assert np.abs(np.asarray(alphas[-1]["alphas"]["reduction"][1])).max() > 1e-4
    for name in ("normal.png", "reduction.png", "normal_alphas.png", "normal.dot"):
        assert (search_dir / "cells" / name).stat().st_size > 0
    assert (search_dir / "alpha_evolution.png").stat().st_size > 0
    assert json.loads((search_dir / "config.json").read_text())["network"] == "darts_standard"
    assert any(f.startswith("events") for f in os.listdir(search_dir / "tb"))
    assert sorted(os.listdir(search_dir / "checkpoints")) == ["2", "3", "fingerprint.json"]


def test_resume_continues_and_matches_uninterrupted(search_dir, tmp_path):
    run_binary("search", SEARCH, tmp_path, "--config.total_env_steps=512")
    assert [r["env_steps"] for r in read_metrics(tmp_path / "metrics.csv")] == [256, 512]
    proc = run_binary("search", SEARCH, tmp_path)  # same command, longer budget
    assert "resuming" in proc.stdout + proc.stderr
    resumed = read_metrics(tmp_path / "metrics.csv")
    straight = read_metrics(search_dir / "metrics.csv")
    assert [r["env_steps"] for r in resumed] == [256, 512, 768]
    for a, b in zip(resumed, straight):
        for key in ("loss", "policy_loss", "value_loss", "alpha_entropy", "episode_return_test"):
            assert a[key] == b[key], (key, a[key], b[key])
    last = lambda d: json.loads(open(d / "alpha_history.jsonl").readlines()[-1])
    np.testing.assert_array_equal(
        np.asarray(last(tmp_path)["alphas"]["normal"][1]),
        np.asarray(last(search_dir)["alphas"]["normal"][1]),
    )


def test_retrain_found_genotype_and_impala(search_dir, tmp_path):
    # One command: the genotype file says which network it belongs to.
    run_binary(
        "train", TRAIN, tmp_path / "cell", f"--config.genotype={search_dir / 'genotype.json'}"
    )
    rows = read_metrics(tmp_path / "cell" / "metrics.csv")
    assert len(rows) == 3 and "alpha_entropy" not in rows[0]
    assert rows[-1]["episode_return_test"] is not None
    assert not (tmp_path / "cell" / "genotype.json").exists()
    config = json.loads((tmp_path / "cell" / "config.json").read_text())
    assert config["network"] == "darts_standard" and "without_genotype" not in config
    assert config["net"] == json.loads((search_dir / "config.json").read_text())["net"]
    run_binary("train", TRAIN, tmp_path / "impala", "--config.network=impala")
    assert json.loads((tmp_path / "impala" / "config.json").read_text())["network"] == "impala"
    assert len(read_metrics(tmp_path / "impala" / "metrics.csv")) == 3


def test_network_contradicting_genotype_one_line_nothing_written(search_dir, tmp_path):
    before = _snapshot(search_dir)
    genotype = search_dir / "genotype.json"
    proc = run_binary(
        "train",
        TRAIN,
        tmp_path / "w",
        "--config.network=darts_impala",
        f"--config.genotype={genotype}",
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: config network='darts_impala' contradicts genotype {genotype} (found "
        "with network='darts_standard'); drop --config.network or use a matching genotype"
    )
    assert not (tmp_path / "w").exists() and _snapshot(search_dir) == before


def _snapshot(directory):
    return {
        os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
        for d, _, files in os.walk(directory)
        for f in files
    }


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["--config.env_name=pong"], "env_name='pong' is not valid; valid choices: bigfish"),
        (["--config.distribution_mode=extreme"], "distribution_mode='extreme'"),
        (["--config.ppo.num_envs=0"], "ppo.num_envs=0 must be positive"),
        (
            ["--config.ppo.microbatch_size=7"],
            "ppo.microbatch_size=7 does not divide the minibatch of 128 samples",
        ),
        (["--config.genotype=/nonexistent/g.json"], "cannot read genotype file"),
        (["--config.net.search_space=bogus"], "unknown search space 'bogus'"),
        (
            ["--config.network=darts_standard", "--config.seed=1"],
            "different config: seed: 0 (checkpoint) vs 1 (now)",
        ),
    ],
)
def test_bad_input_one_line_nonzero_nothing_overwritten(search_dir, overrides, message):
    before = _snapshot(search_dir)
    binary = "train" if "genotype" in overrides[0] else "search"
    extra = ["--config.network=darts_standard"] if binary == "train" else []
    proc = run_binary(
        binary, TRAIN if binary == "train" else SEARCH, search_dir, *extra, *overrides, check=False
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, proc.stderr[-2000:]
    assert _snapshot(search_dir) == before


def test_unknown_config_key_and_mismatched_genotype(search_dir, tmp_path):
    proc = run_binary("search", SEARCH, tmp_path / "x", "--config.ppo.num_env=3", check=False)
    assert proc.returncode != 0 and "num_env" in proc.stderr
    assert not (tmp_path / "x").exists()
    # A genotype whose cell types do not fit the network.
    bad = tmp_path / "g.json"
    bad.write_text('{"format_version": 1, "cells": {"normal": {"nodes": [[[0, "Relu"]]]}}}')
    proc = run_binary(
        "train",
        TRAIN,
        tmp_path / "y",
        "--config.network=darts_standard",
        f"--config.genotype={bad}",
        check=False,
    )
    assert proc.returncode != 0
    assert "does not fit network 'darts_standard'" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "y").exists()
    bad.write_text("{broken")
    proc = run_binary(
        "train",
        TRAIN,
        tmp_path / "y",
        "--config.network=darts_standard",
        f"--config.genotype={bad}",
        check=False,
    )
    assert proc.returncode != 0 and "malformed genotype JSON" in proc.stderr


def test_nan_loss_stops_with_iteration_and_keeps_good_checkpoint(tmp_path):
    proc = run_binary(
        "train",
        TRAIN,
        tmp_path,
        "--config.ppo.learning_rate=1e30",
        "--config.ppo.max_grad_norm=1e30",
        "--config.log.checkpoint_every_iterations=1",
        check=False,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "non-finite loss" in last and "at iteration" in last, proc.stderr[-2000:]
    steps = [d for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
    bad_iteration = int(last.split("at iteration ")[1].split(";")[0])
    assert all(int(s) < bad_iteration for s in steps)


def test_alternating_mode_with_unseen_levels(tmp_path):
    """First-order bilevel search in-process: held-out envs on unseen levels feed the
    alpha step; their returns are logged apart."""
    from experiments.configs import search
    from rldarts.run import experiment

    c = search.get_config("smoke")
    c.arch.mode = "alternating"
    c.arch.heldout_source = "unseen_levels"
    c.total_env_steps = 2 * 8 * 32
    c.log.tensorboard = False
    out = experiment.run(c, str(tmp_path), require_supernet=True, log=lambda *_: None)
    assert out["iterations"] == 2
    rows = read_metrics(tmp_path / "metrics.csv")
    assert "episode_return_heldout" in rows[0]
    moved = [np.abs(np.asarray(a)).max() for a in out["state"].alphas["normal"]]
    assert max(moved) > 1e-4
