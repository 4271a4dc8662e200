"""The binaries with several devices, end to end on real Procgen (4 forced host
devices): a data-parallel smoke search and a retrain of its genotype, and bad device
settings refused with one line before anything is written."""

import json
import os
import subprocess
import sys

import numpy as np

from rldarts.model.genotypes import NetworkGenotype
from rldarts.run.logger import read_metrics
from tests._binaries import ROOT, SEARCH, TRAIN


def run(binary, config, workdir, *overrides, devices=4, check=True):
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_NUM_CPU_DEVICES=str(devices),
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    )
    cmd = [
        sys.executable,
        "-m",
        f"experiments.{binary}",
        config,
        f"--workdir={workdir}",
        *overrides,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


def test_four_device_search_then_retrain(tmp_path):
    search = tmp_path / "search"
    run("search", SEARCH, search, "--config.parallel.learner_devices=4")
    rows = read_metrics(search / "metrics.csv")
    assert [r["env_steps"] for r in rows] == [256, 512, 768]
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert rows[-1]["episode_return_test"] is not None
    assert 0 < np.log(3) - rows[-1]["alpha_entropy"] < 1e-3  # the alphas moved
    assert json.loads((search / "config.json").read_text())["parallel"]["learner_devices"] == 4
    genotype = NetworkGenotype.load(str(search / "genotype.json"))
    assert set(genotype.cells) == {"normal", "reduction"}
    # The retrain uses every device (0 = all) and its acting shards over them too.
    run(
        "train",
        TRAIN,
        tmp_path / "cell",
        f"--config.genotype={search / 'genotype.json'}",
        "--config.parallel.learner_devices=0",
    )
    rows = read_metrics(tmp_path / "cell" / "metrics.csv")
    assert len(rows) == 3 and all(np.isfinite(r["loss"]) for r in rows)


def _one_line_error(proc, workdir):
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not os.path.exists(workdir)
    return proc.stderr.strip().splitlines()[-1]


def test_bad_device_settings_one_line_nothing_written(tmp_path):
    workdir = tmp_path / "w"
    line = _one_line_error(
        run("search", SEARCH, workdir, "--config.parallel.learner_devices=3", check=False), workdir
    )
    assert line == (
        "error: 8 envs do not divide over 1 process(es) x 3 acting device(s); "
        "use a multiple of 3 (ppo/dqn.num_envs, arch.heldout_fraction) or change "
        "parallel.learner_devices"
    )
    line = _one_line_error(
        run(
            "search",
            SEARCH,
            workdir,
            "--config.parallel.async_actor=True",
            "--config.parallel.actor_devices=(7,)",
            check=False,
        ),
        workdir,
    )
    assert line == (
        "error: config parallel.actor_devices=[7] names devices that do not "
        "exist: [7]; this process has 4 device(s), ids 0..3"
    )
    line = _one_line_error(
        run(
            "search",
            SEARCH,
            workdir,
            "--config.agent=dqn",
            "--config.parallel.learner_devices=4",
            "--config.dqn.batch_size=30",
            check=False,
        ),
        workdir,
    )
    assert line == (
        "error: config dqn.batch_size=30 does not divide over 4 learner devices; "
        "use a multiple of 4"
    )
