"""Prioritized n-step replay: returns, validity across wrap-around, sampling law, checkpoints.

Observations encode (global step, env) so every sampled field can be checked against a
plain-Python reference computed from the full, never-overwritten history.
"""

import os

import numpy as np
import pytest

from rldarts.learn.replay import PrioritizedReplay


def reference(rewards, dones, latest, n, gamma, oldest=0):
    """{(step, env): (return, discount, next_step)} for every complete transition.

    rewards/dones: lists over steps of per-env lists. A window is complete when step s+n
    was written or the episode ended inside it; steps older than `oldest` were overwritten.
    """
    out = {}
    for s in range(oldest, latest + 1):
        for e in range(len(rewards[0])):
            ret, terminal, k = 0.0, False, None
            for i in range(n):
                if s + i > latest:
                    break
                ret += gamma**i * rewards[s + i][e]
                if dones[s + i][e]:
                    terminal, k = True, i + 1
                    break
            if terminal:
                out[(s, e)] = (ret, 0.0, s + k - 1)
            elif s + n <= latest:
                out[(s, e)] = (ret, gamma**n, s + n)
    return out


def encoded_obs(step, num_envs):
    return np.array([[step, e] for e in range(num_envs)], np.int64)


def check_batch(batch, ref, num_envs):
    for j in range(len(batch["indices"])):
        s, e = (int(x) for x in batch["obs"][j])
        assert (s, e) in ref, f"sampled incomplete or overwritten transition {(s, e)}"
        ret, disc, next_step = ref[(s, e)]
        assert batch["rewards"][j] == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert batch["discounts"][j] == pytest.approx(disc, rel=1e-6)
        assert tuple(batch["next_obs"][j]) == (next_step, e)
        assert batch["indices"][j] % num_envs == e


def test_nstep_returns_on_scripted_trajectory():
    n, gamma, num_envs, steps = 3, 0.9, 2, 15
    done_at = {0: {2, 3, 9}, 1: {6, 14}}
    buf = PrioritizedReplay(100, num_envs, (2,), np.int64, n_step=n, gamma=gamma)
    rewards, dones = [], []
    for t in range(steps):
        r = [float(t + 1), float(-2 * t)]
        d = [t in done_at[0], t in done_at[1]]
        buf.add(encoded_obs(t, num_envs), np.array([t, t + 100]), np.array(r), np.array(d))
        rewards.append(r)
        dones.append(d)
    ref = reference(rewards, dones, steps - 1, n, gamma)
    # Hand-checked entries: env 0 step 1 ends at step 2 (two rewards), step 3 is a one-step
    # episode, step 4 bootstraps from step 7; env 1 step 13 ends at the last step.
    assert ref[(1, 0)] == pytest.approx((2 + 0.9 * 3, 0.0, 2))
    assert ref[(3, 0)] == pytest.approx((4.0, 0.0, 3))
    assert ref[(4, 0)] == pytest.approx((5 + 0.9 * 6 + 0.81 * 7, 0.729, 7))
    assert ref[(13, 1)] == pytest.approx((-26 + 0.9 * -28, 0.0, 14))
    assert (12, 0) not in ref and (12, 1) in ref  # env 0 step 12 still needs step 15
    assert buf.size == len(ref)
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(40):
        batch = buf.sample(16, rng)
        check_batch(batch, ref, num_envs)
        s, e = batch["obs"][:, 0], batch["obs"][:, 1]
        np.testing.assert_array_equal(batch["actions"], s + 100 * e)
        seen |= {(int(a), int(b)) for a, b in zip(s, e)}
    assert seen == set(ref)


def test_frames_stored_once_and_memory_estimate():
    shape, cap = (64, 64, 3), 1000
    buf = PrioritizedReplay(cap, 4, shape, np.uint8, n_step=3)
    frame = 64 * 64 * 3
    assert cap * frame <= buf.memory_bytes() < 1.01 * cap * frame
    assert buf.memory_bytes() == PrioritizedReplay.estimate_bytes(cap, shape, np.uint8, 4)
    assert frame <= buf.bytes_per_transition < 1.01 * frame
    big = PrioritizedReplay.estimate_bytes(500_000, shape, np.uint8)
    assert 6.1e9 < big < 6.2e9
    # next_obs is the stored frame at t + n (no separate copy).
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(10, 4) + shape, dtype=np.uint8)
    for t in range(10):
        buf.add(frames[t], np.zeros(4), np.zeros(4), np.zeros(4, bool))
    b = buf.sample(8, rng)
    for j, leaf in enumerate(b["indices"]):
        t, e = divmod(int(leaf), 4)
        np.testing.assert_array_equal(b["obs"][j], frames[t, e])
        np.testing.assert_array_equal(b["next_obs"][j], frames[t + 3, e])


@pytest.mark.parametrize("rows", [5, 12])  # 5 = n + 1, the tightest legal ring
def test_wraparound_never_mixes_eras_and_incomplete_never_sampled(rows):
    n, gamma, num_envs = 4, 0.95, 3
    buf = PrioritizedReplay(rows * num_envs, num_envs, (2,), np.int64, n_step=n, gamma=gamma)
    rng = np.random.default_rng(2)
    rewards, dones = [], []
    for t in range(8 * rows + 5):
        r = rng.normal(size=num_envs)
        d = rng.random(num_envs) < 0.12
        buf.add(encoded_obs(t, num_envs), np.zeros(num_envs), r, d)
        rewards.append(list(r))
        dones.append(list(d))
        ref = reference(rewards, dones, t, n, gamma, oldest=max(0, t - rows + 1))
        assert buf.size == len(ref)
        assert buf.num_added == (t + 1) * num_envs
        if buf.size:
            batch = buf.sample(32, rng)
            check_batch(batch, ref, num_envs)
            nonterminal = batch["discounts"] > 0
            np.testing.assert_array_equal(
                batch["next_obs"][nonterminal, 0], batch["obs"][nonterminal, 0] + n
            )
            buf.update_priorities(batch["indices"], rng.exponential(size=32))
    # Stale indices (now overwritten / incomplete) are not resurrected by an update.
    newest = (t % rows) * num_envs + np.arange(num_envs)
    live_before = buf.get_priorities(newest) > 0
    buf.update_priorities(newest, np.full(num_envs, 3.0))
    assert np.array_equal(buf.get_priorities(newest) > 0, live_before)


def _filled(alpha=0.8, beta=0.4):
    buf = PrioritizedReplay(
        2 * 10,
        2,
        (2,),
        np.int64,
        n_step=1,
        gamma=0.9,
        priority_exponent=alpha,
        importance_exponent=beta,
    )
    for t in range(10):  # 9 complete rows x 2 envs = 18 sampleable
        buf.add(encoded_obs(t, 2), np.zeros(2), np.zeros(2), np.zeros(2, bool))
    return buf


def _check_law(buf, raw, rng, draws=1500, batch=32):
    idx = np.arange(len(raw))
    p = (np.asarray(raw, float) + buf.priority_epsilon) ** buf.priority_exponent
    expected = p / p.sum()
    counts = np.zeros(len(raw))
    for _ in range(draws):
        b = buf.sample(batch, rng)
        np.add.at(counts, b["indices"], 1)
        w = (buf.size * expected[b["indices"]]) ** -buf.importance_exponent
        np.testing.assert_allclose(b["weights"], w / w.max(), rtol=1e-5)
        assert b["weights"].dtype == np.float32
    total = draws * batch
    chi2 = np.sum((counts[idx] - total * expected) ** 2 / (total * expected))
    # Multinomial chi2 with 17 dof has mean 17, 99.9% quantile ~40; stratification only
    # lowers it. Ignoring alpha or the epsilon layout gives values in the thousands.
    assert chi2 < 45, (chi2, counts / total, expected)


def test_sampling_frequencies_and_importance_weights():
    buf = _filled()
    assert buf.size == 18 and buf.capacity == 20
    leaves = np.arange(18)
    # Stratified: equal masses and one draw per segment hit every transition exactly once.
    b = buf.sample(18, np.random.default_rng(9))
    np.testing.assert_array_equal(np.sort(b["indices"]), leaves)
    raw = np.linspace(0.05, 2.0, 18)
    buf.update_priorities(leaves, raw)
    _check_law(buf, raw, np.random.default_rng(3))
    raw = raw.copy()
    raw[[0, 5]] = [6.0, 0.0]  # a zero priority still gets epsilon mass, not stuck
    buf.update_priorities(leaves[[0, 5]], raw[[0, 5]])
    _check_law(buf, raw, np.random.default_rng(4))
    # New transitions enter at the running max raw priority (6 + eps), alpha applied.
    buf.add(encoded_obs(10, 2), np.zeros(2), np.zeros(2), np.zeros(2, bool))
    np.testing.assert_allclose(buf.get_priorities([18, 19]), (6.0 + 1e-6) ** 0.8)


def test_sample_is_deterministic_and_checkpoint_round_trip(tmp_path):
    buf = PrioritizedReplay(30, 3, (2,), np.int64, n_step=3, gamma=0.9)
    rng = np.random.default_rng(5)
    for t in range(25):  # wraps twice
        buf.add(encoded_obs(t, 3), rng.integers(0, 4, 3), rng.normal(size=3), rng.random(3) < 0.2)
        if buf.size:
            b = buf.sample(4, rng)
            buf.update_priorities(b["indices"], rng.exponential(size=4))
    path = tmp_path / "replay.npz"
    buf.save(path)
    assert os.listdir(tmp_path) == ["replay.npz"]  # no temp file left behind
    other = PrioritizedReplay(30, 3, (2,), np.int64, n_step=3, gamma=0.9)
    other.load(path)
    assert (other.size, other.num_added) == (buf.size, buf.num_added)
    for step in range(3):  # identical samples, and identical after continuing to add
        a, b = (
            buf.sample(8, np.random.default_rng(step)),
            other.sample(8, np.random.default_rng(step)),
        )
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        for x in (buf, other):
            x.add(encoded_obs(25 + step, 3), np.ones(3), np.ones(3), np.zeros(3, bool))
            x.update_priorities(a["indices"], np.arange(8.0))
    with pytest.raises(ValueError, match="obs_shape"):
        PrioritizedReplay(30, 3, (3,), np.int64, n_step=3, gamma=0.9).load(path)
    with pytest.raises(ValueError, match="n_step"):
        PrioritizedReplay(30, 3, (2,), np.int64, n_step=2, gamma=0.9).load(path)


def test_argument_validation():
    with pytest.raises(ValueError, match="capacity=8"):
        PrioritizedReplay(8, 2, (1,), n_step=4)  # 4 rows cannot hold a 4-step window
    with pytest.raises(ValueError, match="gamma"):
        PrioritizedReplay(100, 2, (1,), gamma=1.5)
    with pytest.raises(ValueError, match="num_envs"):
        PrioritizedReplay(100, 0, (1,))
    buf = PrioritizedReplay(100, 2, (1,))
    with pytest.raises(ValueError, match="no complete"):
        buf.sample(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="obs shape"):
        buf.add(np.zeros((3, 1), np.uint8), np.zeros(3), np.zeros(3), np.zeros(3, bool))


class _EdgeRng:
    """Draws 1.0, the value float rounding can produce at the top of the last stratum."""

    def random(self, size):
        return np.ones(size)


def test_descent_never_lands_on_an_empty_leaf():
    buf = PrioritizedReplay(16, 1, (2,), np.int64, n_step=1)
    for t in range(3):  # leaves 0, 1 sampleable; 2..15 (right subtree) empty
        buf.add(encoded_obs(t, 1), np.zeros(1), np.zeros(1), np.zeros(1, bool))
    b = buf.sample(4, _EdgeRng())
    assert set(b["indices"].tolist()) <= {0, 1}
    assert np.all(np.isfinite(b["weights"]))


def test_segment_boundary_closes_open_windows():
    """At an env segment boundary the envs are rebuilt: the last n steps before it must
    never be sampled, since their windows would read the new episodes' rewards and
    bootstrap frames. One env, n=3; every sampleable transition's window and next_obs
    stay inside its own segment."""
    n, gamma = 3, 0.9
    buf = PrioritizedReplay(64, 1, (2,), np.int64, n_step=n, gamma=gamma)
    rewards, dones = [], []
    for t in range(10):  # segment 0: steps 0..9, no episode end
        buf.add(encoded_obs(t, 1), [0], [1.0], [False])
        rewards.append([1.0])
        dones.append([False])
    buf.close_open_windows()
    for t in range(10, 20):  # segment 1: fresh envs, rewards 100
        buf.add(encoded_obs(t, 1), [0], [100.0], [False])
        rewards.append([100.0])
        dones.append([False])
    live = {int(i) for i in np.flatnonzero(buf.get_priorities(np.arange(64)) > 0)}
    assert live == set(range(0, 7)) | set(range(10, 17))  # 7, 8, 9 closed; 17-19 open
    batch = buf.sample(64, np.random.default_rng(0))
    segment = lambda step: step >= 10
    for obs, next_obs, ret in zip(batch["obs"], batch["next_obs"], batch["rewards"]):
        assert segment(obs[0]) == segment(next_obs[0])
        assert ret == pytest.approx(
            (100.0 if segment(obs[0]) else 1.0) * sum(gamma**i for i in range(n))
        )
    assert buf.size == len(live)


def test_closing_windows_keeps_episode_ends_and_an_empty_buffer_unchanged():
    buf = PrioritizedReplay(64, 2, (2,), np.int64, n_step=3, gamma=0.9)
    buf.close_open_windows()  # nothing written yet: a no-op
    buf.add(encoded_obs(0, 2), [0, 0], [1.0, 1.0], [True, False])
    assert buf.size == 1  # env 0's episode ended: its window is complete
    buf.close_open_windows()
    buf.add(encoded_obs(1, 2), [0, 0], [1.0, 1.0], [False, True])
    # env 1's step 0 was open at the boundary: closed, even though step 1 ends an episode
    assert sorted(np.flatnonzero(buf.get_priorities(np.arange(64)) > 0)) == [0, 3]


def reference_truncated(rewards, dones, truncs, latest, n, gamma):
    """As ``reference``, with truncated episode ends: a window reaching one at step j > s
    bootstraps from frame j with the rewards before it (discount gamma^(j - s)); the
    transition at a truncation itself has no next frame and is absent."""
    out = {}
    for s in range(latest + 1):
        for e in range(len(rewards[0])):
            if dones[s][e] and truncs[s][e]:
                continue
            ret = 0.0
            for i in range(n):
                if s + i > latest:
                    break
                if dones[s + i][e] and truncs[s + i][e]:
                    out[(s, e)] = (ret, gamma**i, s + i)
                    break
                ret += gamma**i * rewards[s + i][e]
                if dones[s + i][e]:
                    out[(s, e)] = (ret, 0.0, s + i)
                    break
            else:
                if s + n <= latest:
                    out[(s, e)] = (ret, gamma**n, s + n)
    return out


@pytest.mark.parametrize("n", [1, 3])
def test_truncated_ends_bootstrap_from_their_frame_and_actions_may_be_vectors(n, tmp_path):
    gamma, num_envs, steps = 0.9, 2, 16
    done_at = {0: {4, 9}, 1: {6, 14}}
    trunc_at = {0: {4}, 1: {6, 14}}  # env 0 step 9 is terminal
    make = lambda: PrioritizedReplay(
        200,
        num_envs,
        (2,),
        np.int64,
        n_step=n,
        gamma=gamma,
        priority_exponent=0.0,
        action_shape=(2,),
        action_dtype=np.float32,
    )
    buf = make()
    rewards, dones, truncs = [], [], []
    for t in range(steps):
        r = [float(t + 1), float(-2 * t)]
        d = [t in done_at[0], t in done_at[1]]
        tr = [t in trunc_at[0], t in trunc_at[1]]
        actions = np.array([[t, 0.5], [t, -0.5]], np.float32)
        buf.add(encoded_obs(t, num_envs), actions, np.array(r), np.array(d), np.array(tr))
        rewards.append(r)
        dones.append(d)
        truncs.append(tr)
    ref = reference_truncated(rewards, dones, truncs, steps - 1, n, gamma)
    assert (4, 0) not in ref and (6, 1) not in ref and (9, 0) in ref
    if n == 3:  # hand-checked: step 3 ends at the truncation of step 4 after one reward
        assert ref[(3, 0)] == pytest.approx((4.0, 0.9, 4))
        assert ref[(2, 0)] == pytest.approx((3 + 0.9 * 4, 0.81, 4))
    assert buf.size == len(ref)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        batch = buf.sample(16, rng)
        check_batch(batch, ref, num_envs)
        np.testing.assert_array_equal(batch["actions"][:, 0], batch["obs"][:, 0])
        np.testing.assert_array_equal(batch["actions"][:, 1], 0.5 - batch["obs"][:, 1])
        np.testing.assert_array_equal(batch["weights"], 1.0)  # uniform
        seen |= {(int(a), int(b)) for a, b in batch["obs"]}
    assert seen == set(ref)
    buf.save(tmp_path / "r.npz")
    other = make()
    other.load(tmp_path / "r.npz")
    a, b = buf.sample(8, np.random.default_rng(1)), other.sample(8, np.random.default_rng(1))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(ValueError, match="action_shape"):
        PrioritizedReplay(
            200, num_envs, (2,), np.int64, n_step=n, gamma=gamma, priority_exponent=0.0
        ).load(tmp_path / "r.npz")
