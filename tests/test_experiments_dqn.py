"""The binaries end to end on real Procgen with --config.agent=dqn: search, resume.

Each run uses the `smoke` preset (3 iterations of 8 envs x 32 steps, learning after 256
transitions, checkpoints every 2 iterations).
"""

import os

import pytest
from _binaries import SEARCH, run_binary

from rldarts.model.genotypes import NetworkGenotype
from rldarts.run.logger import read_metrics


@pytest.fixture(scope="module")
def dqn_search_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dqn_search")
    run_binary("search", SEARCH, workdir, "--config.agent=dqn")
    return workdir


def test_dqn_search_workdir_and_exact_resume(dqn_search_dir, tmp_path):
    rows = read_metrics(dqn_search_dir / "metrics.csv")
    assert [r["env_steps"] for r in rows] == [256, 512, 768]
    # Learning starts once the replay holds min_replay_size (256) transitions.
    assert rows[-1]["learner_steps"] > 0 and rows[-1]["td_loss"] is not None
    assert rows[-1]["replay_memory_gb"] > 0
    assert NetworkGenotype.load(str(dqn_search_dir / "genotype.json"))
    assert any(f.startswith("replay_3_") for f in os.listdir(dqn_search_dir / "checkpoints"))
    # Resume restores params, alphas, optimizer states and the replay: same numbers.
    run_binary("search", SEARCH, tmp_path, "--config.agent=dqn", "--config.total_env_steps=512")
    proc = run_binary("search", SEARCH, tmp_path, "--config.agent=dqn")
    assert "resuming" in proc.stdout and "refills" not in proc.stdout
    resumed = read_metrics(tmp_path / "metrics.csv")
    for a, b in zip(resumed, rows):
        for key in ("td_loss", "learner_steps", "replay_size", "alpha_entropy"):
            assert a[key] == b[key], (key, a[key], b[key])


def test_dqn_replay_that_cannot_fit_is_refused(tmp_path):
    from experiments.configs import train
    from rldarts.run import setup

    c = train.get_config("smoke")
    c.agent = "dqn"
    c.dqn.replay_capacity = 10**10
    with pytest.raises(
        ValueError,
        match=r"replay_capacity=10,000,000,000 needs about "
        r"\d+\.\d GB of replay memory; .* GB is available",
    ):
        setup.build(c, require_supernet=False)
