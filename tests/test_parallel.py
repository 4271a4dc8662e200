"""Data-parallel learner (rldarts.learn.parallel): 1 device vs 4 forced host devices make the
same PPO update (both update loops; the DQN learner step: test_parallel_dqn.py), in
every arch mode and with every arch.method; and the bad settings are refused with one
line.

The comparisons run in one subprocess per agent (the device count is fixed when JAX
starts). Each case reports the largest parameter / alpha difference between the
1-device and the 4-device run relative to how far the update moved them: summation
order gives ~1e-5; per-device batch statistics or an unreduced gradient give O(1)
(``test_batch_statistics.py`` shows the former on a bare batch-norm loss).
"""

import json
import os
import subprocess
import sys

import pytest
from ml_collections import config_dict

from rldarts.learn import parallel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PPO_CASES = [
    "joint:darts:host",
    "alternating:gdas:host",
    "unrolled:pc_darts:host",
    "frozen:darts:host",
    "joint:darts:scan",
]


def run_cases(agent, cases):
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_NUM_CPU_DEVICES="4",
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        PYTHONPATH=REPO,
    )
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "_parallel_equivalence.py"), agent, *cases],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["case"] for r in rows] == cases
    return rows


def check_rows(rows, agent):
    for row in rows:
        mode = row["case"].split(":")[0]
        assert row["params_moved"] > 1e-6, row  # not vacuous: the update moved them
        assert row["params_diff"] < 1e-2, row
        if mode == "frozen":
            assert row["alphas_moved"] == 0.0, row
        elif ":gdas:" not in row["case"]:
            # (In these one-stage gdas supernets the first steps leave the alphas as
            # they are: node 0's edge weight is removed by batch norm, WORKSPACE.md
            # "Search methods"; gdas's alphas moving is test_experiments_gdas.py's.)
            assert row["alphas_moved"] > 1e-6, row
            assert row["alphas_diff"] < 1e-2, row
        assert row["loss"][0] == pytest.approx(row["loss"][1], rel=1e-5), row


def test_one_and_four_devices_make_the_same_ppo_update():
    check_rows(run_cases("ppo", PPO_CASES), "ppo")


def _cfg(**kw):
    c = config_dict.ConfigDict(
        dict(
            learner_devices=1,
            async_actor=False,
            actor_devices=(0,),
            coordinator_address="",
            num_processes=1,
            process_id=0,
        )
    )
    c.update(kw)
    return c


def test_bad_settings_name_the_numbers():
    ok = dict(num_envs=64, num_heldout=16, minibatches=[1536, 512], device_count=8)
    parallel.check(_cfg(learner_devices=8), **ok)
    parallel.check(_cfg(learner_devices=0, async_actor=True, actor_devices=(0, 1, 2, 3)), **ok)
    with pytest.raises(
        ValueError,
        match=r"actor_devices=\[9\] names devices that do not "
        r"exist: \[9\]; this process has 8 device\(s\), "
        r"ids 0..7",
    ):
        parallel.check(_cfg(async_actor=True, actor_devices=(9,)), **ok)
    with pytest.raises(ValueError, match="learner_devices=8 but only 7 of this process's 8 device"):
        parallel.check(_cfg(learner_devices=8, async_actor=True, actor_devices=(0,)), **ok)
    with pytest.raises(
        ValueError,
        match=r"60 envs do not divide over 1 process\(es\) x 8 "
        r"acting device\(s\)",
    ):
        parallel.check(_cfg(learner_devices=8), num_envs=64, num_heldout=4, device_count=8)
    with pytest.raises(
        ValueError, match="a PPO minibatch of 100 samples does not divide over 8 learner devices"
    ):
        parallel.check(
            _cfg(learner_devices=8), num_envs=64, num_heldout=0, minibatches=[100], device_count=8
        )
    with pytest.raises(
        ValueError, match="dqn.batch_size=30 does not divide over 4 learner devices"
    ):
        parallel.check(
            _cfg(learner_devices=4), num_envs=64, num_heldout=0, batch_sizes=[30], device_count=4
        )
    with pytest.raises(ValueError, match=r"32 envs do not divide over 3 process"):
        parallel.check(_cfg(), num_envs=32, num_heldout=0, device_count=1, process_count=3)
    with pytest.raises(ValueError, match="learner_devices=-1 must be an int >= 0"):
        parallel.check(_cfg(learner_devices=-1), num_envs=8, num_heldout=0)
