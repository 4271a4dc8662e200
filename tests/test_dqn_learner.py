"""DQN learner bookkeeping on the host: samples-per-insert counted from the moment
learning starts (no burst of learner steps), replay windows closed at segment starts,
and each env group's own Ape-X epsilon spread. The jitted learner step is replaced by
a counter: this is about when it runs, not what it computes (except the multi-host
importance weights, a pure function of the batch)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import base
from rldarts.learn import dqn, dqn_losses, parallel
from rldarts.model import networks


class _FakeActor:
    """Actor stand-in: one env group of ``n`` envs, random frames, no episode ends."""

    def __init__(self, n):
        self.sizes, self.envs = [n], [None]
        self._rng, self._t = np.random.default_rng(0), 0

    def act(self, params, alphas, inv_temp):
        return np.zeros(self.sizes[0], np.int32), {}

    def step(self, actions):
        n = self.sizes[0]
        self._t += 1
        obs = np.full((n, 4, 4, 3), self._t % 256, np.uint8)
        return obs, np.ones(n, np.float32), np.zeros(n, bool), [(np.zeros(0), np.zeros(0))]


def _learner(min_replay=96, spi=2.0, batch=16, n=8):
    c = base.get_base_config().dqn
    c.min_replay_size, c.samples_per_insert, c.batch_size, c.n_step = min_replay, spi, batch, 3
    replays = dqn.make_replays(c, [n], (4, 4, 3), np.uint8)
    learner = dqn.Learner.__new__(dqn.Learner)  # no model: the step is counted below
    learner.cfg, learner.replays, learner.reward_scale = c, replays, 1.0
    learner.inserted = learner.sampled = 0
    learner.rng = np.random.default_rng(0)
    learner.topology, learner.pipeline = parallel.single_device(), None
    learner.batch_size, learner.min_replay_size = batch, min_replay
    calls = []

    def step(state, b, held, inv_temp):
        calls.append(len(b["obs"]))
        return (
            state._replace(learner_steps=state.learner_steps + 1),
            {"priorities": np.ones(len(b["obs"]), np.float32), "loss": jnp.float32(0.0)},
        )

    learner.step = step
    return learner, calls


def test_no_burst_of_learner_steps_when_learning_starts():
    learner, calls = _learner()
    actor = _FakeActor(8)
    state = _State(0)
    steps_per_env_step = []
    for _ in range(40):  # one env step (8 transitions) per iteration
        before = len(calls)
        state, _, _ = learner.run_iteration(actor, state, 1.0, 8)
        steps_per_env_step.append(len(calls) - before)
    # spi 2, 8 inserts, batch 16: one learner step per env step once learning runs.
    assert max(steps_per_env_step) == 1, steps_per_env_step
    first = steps_per_env_step.index(1)
    assert learner.replays[0].size >= 96
    assert all(k == 1 for k in steps_per_env_step[first:])
    assert learner.sampled == pytest.approx(2.0 * learner.inserted, abs=16)


class _State(tuple):
    """Minimal NamedTuple-like state with learner_steps, params and alphas."""

    def __new__(cls, steps):
        return super().__new__(cls, (steps,))

    learner_steps = property(lambda self: self[0])
    params = alphas = property(lambda self: {})

    def _replace(self, learner_steps):
        return _State(learner_steps)


def test_segment_start_closes_the_replay_windows():
    learner, _ = _learner(min_replay=10_000)
    actor = _FakeActor(8)
    state = _State(0)
    learner.run_iteration(actor, state, 1.0, 8 * 10)
    before = learner.replays[0].size  # steps 0..6 complete, 7..9 open
    learner.start_segment(seed=0, segment=1)
    learner.run_iteration(actor, state, 1.0, 8 * 3)
    assert before == 7 * 8
    assert learner.replays[0].size == before  # the 3 open steps were dropped


def test_heldout_group_has_its_own_epsilon_spread():
    c = base.build("smoke")
    c.arch.mode = "alternating"
    torso = networks.make_torso("impala", depths=(4,), dense=8)
    agent = dqn.Agent(c, torso, 3, "alternating", 2, 256, obs_shape=(8, 8, 3))
    # Group 0 (6 envs) and group 1 (2 envs) each span base .. base**(1 + alpha).
    train = dqn_losses.apex_epsilons(6, c.dqn.epsilon_base, c.dqn.epsilon_alpha)
    held = dqn_losses.apex_epsilons(2, c.dqn.epsilon_base, c.dqn.epsilon_alpha)
    assert held[0] == pytest.approx(c.dqn.epsilon_base)
    obs = np.zeros((2, 8, 8, 3), np.uint8)
    params = agent.model.init(jax.random.PRNGKey(0), obs, {})
    # Epsilon 1 for group 1 would act uniformly; check the policy reads group 1's own
    # spread by counting non-greedy actions over many keys at epsilon = base (0.4).
    policy = jax.jit(agent.policy, static_argnames="group")
    greedy = np.argmax(
        dqn_losses.q_values(agent.model.apply(params, obs, {}, 1.0), dqn.atoms(c.dqn)), axis=-1
    )
    explored = []
    for k in range(300):
        a = np.asarray(policy(params, {}, obs, jax.random.PRNGKey(k), 1.0, group=1)[0])
        explored.append(a != greedy)
    explored = np.mean(explored, axis=0)
    # Env 0 of the held-out group explores with eps = base (0.4): non-greedy ~ 0.4 * 2/3
    # (over all columns it would have ~0.4**(1 + 7 * 6/7) ~ 0.001); env 1 with base**8.
    assert 0.18 < explored[0] < 0.36, explored
    assert explored[1] < 0.02, explored
    assert train[0] == held[0]


def test_multi_host_importance_weights_are_normalised_over_the_global_batch():
    """Two replays stand for two processes' (different priorities and sizes); each
    samples half the batch. The weights the step uses must be the global ones, (N P(i))
    ^-beta over the max of the whole batch with P(i) = P_p(i) / 2 and N both sizes, as
    one process holding both replays would sample them."""
    from rldarts.learn.replay import PrioritizedReplay

    beta, rng = 0.5, np.random.default_rng(0)
    replays = []
    for rows, scale in ((12, 1.0), (30, 50.0)):  # 20 and 56 complete transitions
        r = PrioritizedReplay(rows * 2, 2, (1,), np.uint8, 1, 0.9, 1.0, beta)
        for _ in range(rows):
            r.add(np.zeros((2, 1), np.uint8), np.zeros(2), np.zeros(2), np.zeros(2, bool))
        r.update_priorities(np.arange(r.size), scale * (1 + rng.random(r.size)))
        replays.append(r)
    halves = [r.sample(8, rng) for r in replays]
    batch = {k: np.concatenate([h[k] for h in halves]) for k in ("weights", "weight_scale")}
    (got,) = dqn.global_importance_weights(batch)
    n = sum(r.size for r in replays)
    prob = np.concatenate(
        [r.get_priorities(h["indices"]) / r._tree[1] / 2 for r, h in zip(replays, halves)]
    )
    w = (n * prob) ** -beta
    np.testing.assert_allclose(got["weights"], w / w.max(), rtol=1e-5)
    assert "weight_scale" not in got
    # The size of what per-process normalisation got wrong here: the smaller replay's
    # items are likelier per item, so the global max lies in the other process's rows,
    # and process 0's rows were weighted 1.4-1.9x too much.
    ratio = np.asarray(got["weights"]) / batch["weights"]
    assert 0.5 < ratio[:8].min() and ratio[:8].max() < 0.75
    np.testing.assert_allclose(ratio[8:], 1.0, rtol=1e-6)
    # One process: exactly the replay's own weights.
    (alone,) = dqn.global_importance_weights(halves[0], rescale=False)
    np.testing.assert_array_equal(alone["weights"], halves[0]["weights"])
    assert "weight_scale" not in alone
