"""DM-Control from pixels (rldarts.env.dmc): the task table against dm_control itself,
the VecEnv against a dm_control env stepped by hand (action repeat, frame stack, reward
sums, fast render settings), same-step autoreset at the time limit, seeds, and the
one-line refusals (unknown task, continuous agent on a discrete env and vice versa)."""

import numpy as np
import pytest

from experiments.configs import base
from rldarts.env import dmc, families
from rldarts.run import config_checks


def test_task_table_matches_dm_control():
    for name, t in dmc.TASKS.items():
        env = dmc.load(t, 0)
        spec = env.action_spec()
        assert spec.shape == (t.action_dim,), name
        np.testing.assert_array_equal(spec.minimum, -1.0)
        np.testing.assert_array_equal(spec.maximum, 1.0)
        vis = env.physics.model.vis
        assert (vis.quality.offsamples, vis.quality.shadowsize) == (0, 0)
        assert (vis.global_.offwidth, vis.global_.offheight) == (84, 84)
        env.close()
    # PlaNet / DrQ action repeats.
    repeats = {n: t.action_repeat for n, t in dmc.TASKS.items()}
    assert repeats == {
        "cartpole_swingup": 8,
        "cheetah_run": 4,
        "walker_walk": 2,
        "finger_spin": 2,
        "reacher_easy": 4,
        "ball_in_cup_catch": 4,
    }


def _by_hand(seed, actions, repeat):
    """Reference: one dm_control env stepped and rendered without the VecEnv."""
    env = dmc.load(dmc.TASKS["finger_spin"], seed)
    env.reset()
    render = lambda: env.physics.render(84, 84, camera_id=0)
    frames, rewards = [render()] * 3, []
    for a in actions:
        r = sum(env.step(a).reward for _ in range(repeat))
        rewards.append(r)
        frames.append(render())
    stacks = [np.concatenate(frames[i : i + 3], axis=-1) for i in range(len(actions) + 1)]
    return stacks, rewards


def test_vec_env_matches_dm_control_stepped_by_hand():
    venv = families.make_env("dmc/finger_spin", 2, seed=7)
    assert (venv.num_actions, venv.action_dim) == (0, 2)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (4, 2, 2))
    obs = [venv.reset()]
    rewards = []
    for a in actions:
        o, r, d, info = venv.step(a)
        assert not d.any() and info["final_obs"].shape == (0, 84, 84, 9)
        obs.append(o)
        rewards.append(r)
    venv.close()
    assert obs[0].shape == (2, 84, 84, 9) and obs[0].dtype == np.uint8
    for i in range(2):
        stacks, ref_rewards = _by_hand(dmc.env_seed(7, i), actions[:, i], 2)
        for t, stack in enumerate(stacks):
            np.testing.assert_array_equal(obs[t][i], stack)
        np.testing.assert_allclose([r[i] for r in rewards], ref_rewards, rtol=1e-6)
    assert not np.array_equal(obs[-1][0], obs[-1][1])  # the envs' seeds differ


def test_time_limit_truncates_and_autoresets_in_the_same_step():
    venv = dmc.DMCVecEnv("dmc/cartpole_swingup", 1, seed=3)
    first = venv.reset()
    steps = 1000 // 8
    for t in range(steps):
        before = venv._stack.copy()
        obs, _, done, info = venv.step(np.zeros((1, 1)))
        assert done[0] == (t == steps - 1)
    assert info["truncated"][0] and not info["terminated"][0]
    # The final stack holds the last frame; obs is the new episode's first frame x 3.
    np.testing.assert_array_equal(info["final_obs"][0][..., :6], before[0][..., 3:])
    np.testing.assert_array_equal(obs[0][..., :3], obs[0][..., 3:6])
    np.testing.assert_array_equal(obs[0][..., :3], obs[0][..., 6:])
    assert not np.array_equal(obs[0], first[0])  # a new episode: new random start
    venv.close()


def test_same_seed_same_frames():
    a, b = (families.make_env("dmc/reacher_easy", 1, seed=11) for _ in range(2))
    np.testing.assert_array_equal(a.reset(), b.reset())
    act = np.full((1, 2), 0.3)
    np.testing.assert_array_equal(a.step(act)[0], b.step(act)[0])
    a.close()
    b.close()


def test_unknown_task_is_refused_in_one_line():
    with pytest.raises(ValueError) as e:
        families.spec("dmc/cartpole_balance")
    msg = str(e.value)
    assert "\n" not in msg and "unknown DM-Control task 'dmc/cartpole_balance'" in msg
    assert all(f"dmc/{t}" in msg for t in dmc.TASKS)
    assert families.spec("dmc/walker_walk") == families.EnvSpec((84, 84, 9), np.uint8, 0, 6)
    assert families.spec("dmc/walker_walk").continuous


@pytest.mark.parametrize(
    "preset, overrides, expected",
    [
        ("dmc_smoke", {"agent": "ppo"}, "agent='ppo' does not fit env_name='dmc/cartpole_swingup'"),
        ("dmc_smoke", {"agent": "dqn"}, "actions are continuous; use agent sac"),
        ("smoke", {"agent": "sac"}, "agent='sac' does not fit env_name='starpilot'"),
        ("minatar_smoke", {"agent": "sac"}, "discrete; use agent ppo or dqn"),
        ("dmc_smoke", {"env_name": "dmc/humanoid_run"}, "valid DM-Control tasks: dmc/cartpole"),
        ("dmc_smoke", {"parallel.async_actor": True}, "not supported with agent 'sac'"),
    ],
)
def test_config_refuses_bad_env_agent_pairs_in_one_line(preset, overrides, expected):
    c = base.build(preset, network=base.networks_of(preset)[0])
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        section = c
        for name in parents:
            section = section[name]
        section[leaf] = value
    with pytest.raises(ValueError) as e:
        config_checks.validate(c)
    assert "\n" not in str(e.value) and expected in str(e.value)


def test_dmc_presets_validate():
    for preset in ("dmc", "dmc_smoke"):
        config_checks.validate(base.build(preset, network="darts_dmc"))
