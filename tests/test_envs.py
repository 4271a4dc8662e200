"""Tests for rldarts.env.envs: reward bookkeeping, autoreset semantics, Procgen, evaluate."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from rldarts.env import envs, training_env

# CartPole-v1 constants: Euler step x' = x + TAU * x_dot; reset state ~ U(-0.05, 0.05);
# termination when |x| > 2.4 or |theta| > 12 degrees.
TAU = 0.02
THETA_LIMIT = 12 * 2 * np.pi / 360


# ----------------------------------------------------------------------------- EpisodeStats
def test_episode_stats_hand_scripted():
    rewards = np.array([[1, 0], [2, 1], [3, 1], [0, 1], [5, 2]], np.float32)
    dones = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0, 1]], bool)
    # env0: (1+2, len 2) at t1, (3+0, len 2) at t3; env1: (0+1+1, len 3) at t2,
    # (1, len 1) at t3, (2, len 1) at t4.
    expected = [([], []), ([3], [2]), ([2], [3]), ([3, 1], [2, 1]), ([2], [1])]
    stats = training_env.EpisodeStats(2)
    for t, (r, d) in enumerate(zip(rewards, dones)):
        rets, lens = stats.update(r, d)
        np.testing.assert_allclose(rets, expected[t][0], err_msg=f"t={t}")
        np.testing.assert_array_equal(lens, expected[t][1], err_msg=f"t={t}")
    np.testing.assert_allclose(stats.returns, [5, 0])
    np.testing.assert_array_equal(stats.lengths, [1, 0])


def test_episode_stats_state_roundtrip():
    a = training_env.EpisodeStats(3)
    a.update(np.array([1.0, 2.0, 3.0]), np.array([False, True, False]))
    b = training_env.EpisodeStats(3)
    b.load_state_dict(a.state_dict())
    r, d = np.array([0.5, 0.5, 0.5]), np.array([True, True, True])
    for x, y in zip(a.update(r, d), b.update(r, d)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(b.returns, 0.0)


# ----------------------------------------------------------------------------- RewardNormalizer
def _reference_normalized(rewards, dones, gamma, clip, eps):
    """Direct computation: discounted return reset after done; np.var over ALL samples."""
    ret = np.zeros(rewards.shape[1])
    done_prev = np.zeros(rewards.shape[1], bool)
    seen, out = [], []
    for r, d in zip(rewards, dones):
        ret = ret * gamma * (1.0 - done_prev) + r
        seen.append(ret.copy())
        var = np.var(np.concatenate(seen))
        out.append(np.clip(r / np.sqrt(var + eps), -clip, clip))
        done_prev = d
    return np.array(out)


def test_reward_normalizer_matches_direct_numpy():
    rng = np.random.default_rng(0)
    T, N, gamma, clip = 60, 4, 0.9, 3.0
    rewards = rng.normal(size=(T, N)) * rng.choice([0.1, 1.0, 20.0], size=(T, N))
    dones = rng.random((T, N)) < 0.15
    rewards[40, 1] = 500.0  # Outlier so that clipping is exercised.
    expected = _reference_normalized(rewards, dones, gamma, clip, 1e-8)
    norm = training_env.RewardNormalizer(N, gamma, clip=clip)
    got = np.array([norm(r, d) for r, d in zip(rewards, dones)])
    assert got.dtype == np.float32
    assert np.any(np.abs(expected) == clip), "test should exercise clipping"
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_reward_normalizer_state_roundtrip():
    rng = np.random.default_rng(1)
    a = training_env.RewardNormalizer(2, 0.99)
    for _ in range(5):
        a(rng.normal(size=2), rng.random(2) < 0.3)
    b = training_env.RewardNormalizer(2, 0.99)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        r, d = rng.normal(size=2), rng.random(2) < 0.3
        np.testing.assert_array_equal(a(r, d), b(r, d))


# ----------------------------------------------------------------------------- autoreset
def test_autoreset_same_step_no_dummy_transition():
    venv = envs.make_gym("CartPole-v1", 3, seed=0, num_threads=1)
    assert (venv.num_actions, venv.observation_shape) == (2, (4,))
    obs = venv.reset()
    assert obs.dtype == np.float32 and obs.shape == (3, 4)
    stats, lengths, num_done = training_env.EpisodeStats(3), [], 0
    for _ in range(60):  # Always push left: episodes last ~10 steps.
        nxt, rew, done, info = venv.step(np.zeros(3, np.int64))
        assert rew.dtype == np.float32 and done.dtype == bool
        # Every real CartPole step gives reward 1; EnvPool's dummy reset step gives 0.
        np.testing.assert_array_equal(rew, 1.0)
        # Not done: nxt must be one physics step from obs (also right after a reset,
        # which proves obs on the done step was the state the next action acted on).
        live = ~done
        np.testing.assert_allclose(nxt[live, 0], obs[live, 0] + TAU * obs[live, 1], atol=1e-5)
        # Done: nxt is a fresh start state, the terminal obs is in final_obs.
        assert np.all(np.abs(nxt[done]) <= 0.05)
        final = info["final_obs"]
        assert final.shape == (done.sum(), 4)
        assert np.all((np.abs(final[:, 2]) > THETA_LIMIT) | (np.abs(final[:, 0]) > 2.4))
        np.testing.assert_array_equal(info["terminated"], done)
        assert not info["truncated"].any()
        rets, lens = stats.update(rew, done)
        np.testing.assert_array_equal(rets, lens)  # Return == length: no 0-reward step.
        lengths += list(lens)
        num_done += done.sum()
        obs = nxt
    assert num_done >= 9 and all(5 <= n <= 15 for n in lengths)
    venv.close()


def test_autoreset_truncation_flag():
    venv = envs.make_gym("CartPole-v1", 2, seed=0, num_threads=1, max_episode_steps=5)
    venv.reset()
    for t in range(1, 16):  # Alternating actions keep the pole up for 5 steps.
        obs, rew, done, info = venv.step(np.full(2, t % 2))
        np.testing.assert_array_equal(rew, 1.0)
        np.testing.assert_array_equal(done, t % 5 == 0)
        np.testing.assert_array_equal(info["truncated"], t % 5 == 0)
        assert not info["terminated"].any()
        if t % 5 == 0:
            assert np.all(np.abs(obs) <= 0.05)


def test_training_env_raw_logging_and_normalized_rewards():
    venv = envs.make_gym("CartPole-v1", 2, seed=0, num_threads=1)
    tenv = training_env.TrainingEnv(venv, gamma=0.99, normalize_reward=True)
    tenv.reset()
    finished = []
    for _ in range(40):
        obs, rew, done, rets, lens = tenv.step(np.zeros(2, np.int64))
        assert rew.dtype == np.float32 and not np.allclose(rew, 1.0)  # Normalised.
        finished += list(zip(rets, lens))
    assert finished and all(r == n for r, n in finished)  # Raw returns for logging.
    state = tenv.state_dict()
    assert set(state) == {"stats", "normalizer"}
    tenv.load_state_dict(state)
    tenv.close()


# ----------------------------------------------------------------------------- Procgen
def test_procgen_shapes_dtype_nhwc():
    venv = envs.make_procgen("starpilot", 3, seed=7, num_threads=1)
    assert venv.num_actions == 15
    assert venv.observation_shape == (64, 64, 3) and venv.observation_dtype == np.uint8
    obs = venv.reset()
    assert obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8
    # NHWC must be a real transpose of EnvPool's NCHW frames, not a reshape.
    raw = envs._ensure_procgen().make(
        "StarpilotEasy-v0", env_type="gymnasium", num_envs=3, seed=7, num_threads=1, num_levels=200
    )
    raw_obs, _ = raw.reset()
    assert raw_obs.shape == (3, 3, 64, 64)
    np.testing.assert_array_equal(obs, raw_obs.transpose(0, 2, 3, 1))
    nxt, rew, done, _ = venv.step(np.arange(3))
    assert nxt.shape == (3, 64, 64, 3) and rew.shape == (3,) and done.shape == (3,)
    venv.close()


def test_procgen_determinism():
    def rollout(seed, steps=150):
        venv = envs.make_procgen("starpilot", 4, "hard", num_levels=10, seed=seed, num_threads=2)
        rng = np.random.default_rng(0)
        frames, rewards, dones = [venv.reset()], [], []
        for _ in range(steps):
            o, r, d, _ = venv.step(rng.integers(0, 15, 4))
            frames.append(o), rewards.append(r), dones.append(d)
        venv.close()
        return np.array(frames), np.array(rewards), np.array(dones)

    a, b, c = rollout(3), rollout(3), rollout(4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_procgen_num_levels_one_gives_identical_levels():
    obs = envs.make_procgen("coinrun", 3, num_levels=1, num_threads=1).reset()
    assert np.array_equal(obs[0], obs[1]) and np.array_equal(obs[0], obs[2])


@pytest.mark.parametrize(
    "kwargs, bad, valid",
    [
        (dict(env_name="starpilott", num_envs=1), "starpilott", "bigfish, bossfight"),
        (
            dict(env_name="starpilot", num_envs=1, distribution_mode="extreme"),
            "extreme",
            "easy, hard",
        ),
        (dict(env_name="starpilot", num_envs=0), "0", "positive"),
    ],
)
def test_procgen_bad_arguments(kwargs, bad, valid):
    with pytest.raises(ValueError) as exc:
        envs.make_procgen(**kwargs)
    msg = str(exc.value)
    assert bad in msg and valid in msg and "\n" not in msg


def test_procgen_games_constant():
    assert len(envs.PROCGEN_GAMES) == 16 and "starpilot" in envs.PROCGEN_GAMES
    assert envs.DISTRIBUTION_MODES == ("easy", "hard")


def test_procgen_works_when_envpool_imported_first():
    # envpool caches a Qt ImportError if imported before Qt is loadable: must recover.
    code = (
        "import envpool\nfrom rldarts.env import envs\n"
        "print(envs.make_procgen('maze', 1, num_threads=1).reset().shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(1, 64, 64, 3)" in out.stdout


# ----------------------------------------------------------------------------- evaluate
def _random_policy(obs, key):
    return jax.random.bernoulli(key, 0.5, (obs.shape[0],)).astype(np.int32)


def test_evaluate_episode_count_and_determinism():
    def factory():
        return envs.make_gym("CartPole-v1", 3, seed=11, num_threads=1)

    res = envs.evaluate(_random_policy, factory, num_episodes=7, key=5, max_steps=2000)
    assert res["returns"].shape == (7,) and res["lengths"].shape == (7,)
    np.testing.assert_array_equal(res["returns"], res["lengths"])
    assert res["mean_return"] == pytest.approx(res["returns"].mean())
    assert res["std"] == pytest.approx(res["returns"].std())
    again = envs.evaluate(
        _random_policy, factory, num_episodes=7, key=jax.random.PRNGKey(5), max_steps=2000
    )
    np.testing.assert_array_equal(res["returns"], again["returns"])
    other = envs.evaluate(_random_policy, factory, num_episodes=7, key=6, max_steps=2000)
    assert not np.array_equal(res["returns"], other["returns"])


def test_evaluate_takes_first_episodes_of_each_env():
    # Env 0 always finishes after 1 step, env 1 after 4: a naive "first N episodes
    # overall" would return only env-0 episodes. We need 2 of each (ceil(4/2)).
    class FakeVenv(envs.VecEnv):
        def __init__(self):
            self.num_envs, self.num_actions, self.t = 2, 2, np.zeros(2, int)

        def reset(self):
            self.t[:] = 0
            return np.zeros((2, 1), np.float32)

        def step(self, actions):
            self.t += 1
            done = self.t >= np.array([1, 4])
            self.t[done] = 0
            return np.zeros((2, 1), np.float32), np.array([1.0, 10.0], np.float32), done, {}

        def close(self):
            pass

    res = envs.evaluate(
        lambda o, k: np.zeros(2, int), FakeVenv(), num_episodes=4, key=0, max_steps=100
    )
    np.testing.assert_array_equal(np.sort(res["returns"]), [1, 1, 40, 40])
    np.testing.assert_array_equal(np.sort(res["lengths"]), [1, 1, 4, 4])
