"""DQN learner bookkeeping on the host: samples-per-insert counted from the moment
learning starts (no burst of learner steps), replay windows closed at segment starts,
and each env group's own Ape-X epsilon spread. The jitted learner step is replaced by
a counter: this is about when it runs, not what it computes."""

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
