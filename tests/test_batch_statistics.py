"""Networks that normalise with batch statistics (the DARTS cells' ``ops.batch_norm``):
the PPO update takes its statistics over the whole minibatch on every loop and backend,
acting takes them per env group, and a batch sharded over devices is still normalised
over the whole batch.

The reference each time is an independent whole-batch computation (``jax.grad`` of the
loss on the full minibatch, the model applied to one group's observations alone), not
the code under test."""

import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import base
from rldarts.learn import arch, async_actor, ppo, ppo_losses
from rldarts.learn.actor import Actor
from rldarts.model import networks, ops
from rldarts.run import config_checks


class BatchNormTorso(nn.Module):
    """A one-edge 'supernet' with a DARTS batch norm: softmax(alphas) mixes ReLU and
    tanh of a normalised dense layer, so each sample's features depend on its batch."""

    @nn.compact
    def __call__(self, obs, alphas=None, inverse_temperature=1.0):
        h = nn.Dense(16)(obs.reshape(obs.shape[0], -1).astype(jnp.float32) / 255.0)
        h = ops.batch_norm(h[:, None, None, :])[:, 0, 0, :]
        if not alphas:
            return nn.relu(h)
        w = jax.nn.softmax(alphas["edge"] * inverse_temperature)
        return w[0] * nn.relu(h) + w[1] * jnp.tanh(h)


def _model():
    return networks.Agent(BatchNormTorso(), networks.PolicyValueHead(3))


def _rollout(rng, steps, envs):
    return {
        "obs": rng.integers(0, 256, (steps, envs, 5, 5, 3), dtype=np.uint8),
        "actions": rng.integers(0, 3, (steps, envs)).astype(np.int32),
        "log_probs": rng.normal(-1.1, 0.1, (steps, envs)).astype(np.float32),
        "values": rng.normal(0, 1, (steps, envs)).astype(np.float32),
        "rewards": rng.normal(0, 1, (steps, envs)).astype(np.float32),
        "dones": (rng.random((steps, envs)) < 0.1).astype(np.float32),
        "last_obs": rng.integers(0, 256, (envs, 5, 5, 3), dtype=np.uint8),
        "last_values": rng.normal(0, 1, envs).astype(np.float32),
    }


def _config(mode="joint"):
    c = base.get_base_config()
    c.ppo.num_envs, c.ppo.num_steps = 8, 128  # minibatches of 512 > the CPU slice of 256
    c.ppo.num_minibatches, c.ppo.update_epochs = 2, 1
    c.arch.mode = mode
    return c


def test_batch_statistics_networks():
    assert networks.uses_batch_statistics("darts_standard")
    assert networks.uses_batch_statistics("darts_impala")
    assert not networks.uses_batch_statistics("impala")


@pytest.mark.parametrize("mode", ["joint", "frozen"])
def test_host_update_of_a_batch_norm_network_is_the_whole_minibatch_update(mode):
    """The CPU host loop (auto microbatch) makes the update of whole minibatches: the
    first step equals plain Adam on ``jax.grad`` of the whole-minibatch loss."""
    c = _config(mode)
    c.ppo.num_minibatches = 1  # one step: its gradient is checked by hand below
    model = _model()
    rollout = _rollout(np.random.default_rng(0), 128, 8)
    alphas = {} if mode == "frozen" else {"edge": jnp.array([0.3, -0.2])}
    state = ppo.init_state(
        model, c.ppo, c.arch, alphas, rollout["last_obs"], jax.random.PRNGKey(1), num_updates=10
    )
    update = ppo.make_update(model, c.ppo, c.arch, 8, 0, num_updates=10, batch_statistics=True)
    new_state, metrics = update(state, rollout, jnp.float32(1.0))

    # Reference: the same minibatch (one minibatch = every sample, in the shuffled
    # order, which batch statistics do not see) and one whole-batch gradient.
    adv, ret = ppo_losses.gae_advantages(
        rollout["rewards"],
        rollout["values"],
        rollout["dones"],
        rollout["last_values"],
        c.ppo.gamma,
        c.ppo.gae_lambda,
    )
    flat = lambda x: np.asarray(x).reshape((-1,) + np.shape(x)[2:])
    batch = {k: flat(rollout[k]) for k in ("obs", "actions", "log_probs", "values")}
    batch.update(advantages=ppo_losses.normalize_advantages(flat(adv)), returns=flat(ret))

    def loss(params, alphas):
        logits, value = model.apply(params, batch["obs"], alphas, 1.0)
        return ppo_losses.ppo_loss(
            logits,
            value,
            batch,
            c.ppo.clip_eps,
            c.ppo.vf_coef,
            c.ppo.ent_coef,
            c.ppo.clip_value_loss,
            norm_adv=False,
        )[0]

    w_grads, a_grads = jax.grad(loss, argnums=(0, 1))(state.params, alphas)
    opt = ppo.make_weight_optimizer(c.ppo, 10)
    updates, _ = opt.update(w_grads, opt.init(state.params), state.params)
    expected = optax.apply_updates(state.params, updates)
    for got, want in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(w_grads), rtol=1e-4)
    if mode == "joint":
        np.testing.assert_allclose(metrics["alpha_grad_norm"], optax.tree.norm(a_grads), rtol=1e-4)


def test_scan_and_host_loops_agree_for_a_batch_norm_network():
    c = _config("alternating")
    model = _model()
    rollout = _rollout(np.random.default_rng(2), 128, 8)
    state = ppo.init_state(
        model,
        c.ppo,
        c.arch,
        {"edge": jnp.array([0.3, -0.2])},
        rollout["last_obs"],
        jax.random.PRNGKey(3),
        num_updates=10,
    )
    out = {}
    for loop in ("host", "scan"):
        c.ppo.update_loop = loop
        update = ppo.make_update(model, c.ppo, c.arch, 8, 4, num_updates=10, batch_statistics=True)
        out[loop] = update(state, rollout, jnp.float32(1.0))
    for got, want in zip(jax.tree.leaves(out["scan"][0]), jax.tree.leaves(out["host"][0])):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_microbatch_size_resolution_and_fingerprint():
    cpu = jax.default_backend() == "cpu"
    assert ppo.microbatch_size(0, [2048], batch_statistics=False) == (256 if cpu else 0)
    assert ppo.microbatch_size(0, [2048], batch_statistics=True) == 0
    # Explicit: a ghost-batch-norm split, so a hyperparameter of DARTS networks only.
    assert ppo.microbatch_size(256, [2048], batch_statistics=True) == 256
    darts, other = base.get_base_config(), base.get_base_config()
    other.ppo.microbatch_size = 256
    assert config_checks.fingerprint(darts) != config_checks.fingerprint(other)
    darts.network = other.network = "impala"
    assert config_checks.fingerprint(darts) == config_checks.fingerprint(other)


def test_explicit_microbatches_of_a_batch_norm_network_are_whole_slices():
    """With ``ppo.microbatch_size`` set, each slice is normalised over itself (never
    split again into the CPU parts): the step's gradient is the mean of the two
    half-batch gradients."""
    c = _config("frozen")
    c.ppo.microbatch_size = 256
    model = _model()
    rng = np.random.default_rng(4)
    obs = rng.integers(0, 256, (512, 5, 5, 3), dtype=np.uint8)
    params = model.init(jax.random.PRNGKey(0), obs, {})
    batch = {
        "obs": obs,
        "actions": rng.integers(0, 3, 512).astype(np.int32),
        "log_probs": rng.normal(-1.1, 0.1, 512).astype(np.float32),
        "values": rng.normal(0, 1, 512).astype(np.float32),
        "advantages": rng.normal(0, 1, 512).astype(np.float32),
        "returns": rng.normal(0, 1, 512).astype(np.float32),
    }
    sgd = optax.sgd(1.0)
    step = ppo.make_minibatch_step(model, c.ppo, c.arch, sgd, sgd, [512], batch_statistics=True)
    new, _ = step(
        arch.ArchState(params, {}, sgd.init(params), sgd.init({})),
        jax.tree.map(jnp.asarray, batch),
        None,
        jnp.float32(1.0),
    )
    new_params = new.params

    def loss(params, part):
        logits, value = model.apply(params, part["obs"], {}, 1.0)
        return ppo_losses.ppo_loss(
            logits,
            value,
            part,
            c.ppo.clip_eps,
            c.ppo.vf_coef,
            c.ppo.ent_coef,
            c.ppo.clip_value_loss,
            norm_adv=False,
        )[0]

    halves = [jax.tree.map(lambda x: x[i * 256 : (i + 1) * 256], batch) for i in (0, 1)]
    grads = [jax.grad(loss)(params, h) for h in halves]
    for got, p, g0, g1 in zip(
        jax.tree.leaves(new_params),
        jax.tree.leaves(params),
        jax.tree.leaves(grads[0]),
        jax.tree.leaves(grads[1]),
    ):
        np.testing.assert_allclose(got, p - (g0 + g1) / 2, rtol=1e-4, atol=1e-6)


class _FakeGroup:
    """A TrainingEnv stand-in: random frames, no rewards or dones."""

    def __init__(self, num_envs, seed):
        self.num_envs, self.normalizer = num_envs, None
        self._rng = np.random.default_rng(seed)

    def _frames(self):
        return self._rng.integers(0, 256, (self.num_envs, 5, 5, 3), dtype=np.uint8)

    def reset(self):
        return self._frames()

    def step(self, actions):
        z = np.zeros(self.num_envs, np.float32)
        return self._frames(), z, z.astype(bool), np.zeros(0), np.zeros(0)

    def close(self):
        pass


def _actor(policy, sizes=(6, 2)):
    actor = Actor(
        lambda segment: [_FakeGroup(n, 10 + i) for i, n in enumerate(sizes)],
        policy,
        jax.random.PRNGKey(0),
    )
    actor.start_segment(0)
    return actor


def test_each_env_group_acts_in_its_own_forward_pass():
    model = _model()
    actor = _actor(ppo.make_policy(model))
    alphas = {"edge": jnp.array([0.3, -0.2])}
    params = model.init(jax.random.PRNGKey(0), actor.obs, alphas)
    obs = actor.obs
    actions, extras = actor.act(params, alphas, jnp.float32(1.0))
    for columns in (slice(0, 6), slice(6, 8)):
        _, value = model.apply(params, obs[columns], alphas, 1.0)
        np.testing.assert_allclose(extras["values"][columns], value, rtol=1e-5, atol=1e-6)
    assert actions.shape == (8,)


def test_first_minibatch_reproduces_the_behaviour_log_probs():
    """Alternating mode, one step per rollout and one minibatch: the first minibatch is
    exactly the batch the training envs acted with, so with the acting parameters (the
    alpha step switched off) the PPO ratio is 1: approx_kl_first is 0."""
    c = _config("alternating")
    c.ppo.num_steps, c.ppo.num_minibatches = 1, 1
    c.arch.learning_rate = 0.0
    model = _model()
    actor = _actor(ppo.make_policy(model))
    alphas = {"edge": jnp.array([0.3, -0.2])}
    state = ppo.init_state(
        model, c.ppo, c.arch, alphas, actor.obs, jax.random.PRNGKey(1), num_updates=10
    )
    update = ppo.make_update(model, c.ppo, c.arch, 8, 2, num_updates=10, batch_statistics=True)
    rollout, _ = ppo.collect_rollout(actor, state, 1, jnp.float32(1.0))
    _, metrics = update(state, rollout, jnp.float32(1.0))
    assert abs(float(metrics["approx_kl_first"])) < 1e-6
    assert float(metrics["approx_kl_first"]) == pytest.approx(float(metrics["approx_kl"]))


_SHARDED_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from rldarts.model import ops
    assert len(jax.devices()) == 4, jax.devices()

    def loss(w, x):
        h = ops.batch_norm(jnp.tanh(x @ w)[:, None, None, :])
        return jnp.mean(jnp.sin(h) * jnp.arange(h.shape[-1]))

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 5)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(5, 7)), jnp.float32)
    whole = jax.grad(loss)(w, x)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    ws = jax.device_put(w, NamedSharding(mesh, P()))
    sharded = jax.jit(jax.grad(loss))(ws, xs)
    assert len(xs.sharding.device_set) == 4
    per_shard = sum(jax.grad(loss)(w, x[i * 16:(i + 1) * 16]) for i in range(4)) / 4
    err = float(jnp.linalg.norm(sharded - whole) / jnp.linalg.norm(whole))
    shard_err = float(jnp.linalg.norm(per_shard - whole) / jnp.linalg.norm(whole))
    print(err, shard_err)
    assert err < 1e-5, err
    assert shard_err > 1e-2, shard_err  # per-device statistics would be caught
""")


def test_batch_sharded_over_devices_is_normalised_over_the_whole_batch():
    """Under ``jax.jit`` with a batch-sharded input, batch_norm's mean and variance
    reduce across devices: the gradient equals the one-device whole-batch gradient,
    not the mean of per-device gradients (the multi-device learner relies on it)."""
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_NUM_CPU_DEVICES="4",
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
    )
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]


def _numpy_explained_variance(rewards, values, dones, last_values, gamma, lam):
    """NumPy GAE (the textbook recursion) -> the update's explained-variance metric."""
    steps = rewards.shape[0]
    adv, running = np.zeros_like(values), np.zeros_like(last_values)
    for t in reversed(range(steps)):
        next_v = last_values if t == steps - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_v * live - values[t]
        running = delta + gamma * lam * live * running
        adv[t] = running
    returns = adv + values
    return 1.0 - np.var(returns - values) / (np.var(returns) + 1e-8)


def _group_values(model, params, alphas, obs, sizes):
    """The value of every column, the model applied to each env group's obs alone."""
    bounds = np.cumsum((0,) + tuple(sizes))
    return np.concatenate(
        [
            np.asarray(model.apply(params, obs[a:b], alphas, 1.0)[1])
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
    )


def test_bootstrap_value_is_computed_per_env_group():
    """Alternating mode: V(s_T) of each env group comes from a forward pass over that
    group alone, as acting computes V(s_t), not from one pass over both groups (which
    mixes their batch statistics). Seen through the update's explained variance,
    recomputed here in NumPy from the rollout and the per-group reference."""
    c = _config("alternating")
    c.ppo.num_steps, c.ppo.num_minibatches = 2, 1
    model = _model()
    actor = _actor(ppo.make_policy(model))
    alphas = {"edge": jnp.array([0.3, -0.2])}
    state = ppo.init_state(
        model, c.ppo, c.arch, alphas, actor.obs, jax.random.PRNGKey(1), num_updates=10
    )
    update = ppo.make_update(model, c.ppo, c.arch, 8, 2, num_updates=10, batch_statistics=True)
    rollout, _ = ppo.collect_rollout(actor, state, 2, jnp.float32(1.0))
    per_group = _group_values(model, state.params, alphas, actor.obs, (6, 2))
    joint = np.asarray(model.apply(state.params, actor.obs, alphas, 1.0)[1])
    assert np.abs(joint - per_group).max() > 1e-2  # not vacuous: the two differ
    _, metrics = update(state, rollout, jnp.float32(1.0))
    args = [rollout[k] for k in ("rewards", "values", "dones")]
    want = _numpy_explained_variance(*args, per_group, c.ppo.gamma, c.ppo.gae_lambda)
    wrong = _numpy_explained_variance(*args, joint, c.ppo.gamma, c.ppo.gae_lambda)
    assert abs(want - wrong) > 1e-3
    np.testing.assert_allclose(float(metrics["explained_variance"]), want, rtol=1e-4, atol=1e-5)


def test_async_bootstrap_value_comes_from_the_behaviour_params():
    """Async actor: the rollout of update i + 1 was collected with the params before
    update i; its V(s_T) must come from those params too (as its V(s_t)), not from the
    learner's newer ones."""
    c = _config("joint")
    c.ppo.num_envs, c.ppo.num_steps, c.ppo.num_minibatches = 8, 2, 1
    c.ppo.learning_rate = 3e-2  # a visible change of the critic in one update
    c.network, c.parallel.async_actor = "darts_impala", True
    alphas = {"edge": jnp.array([0.3, -0.2])}
    agent = ppo.Agent(c, BatchNormTorso(), 3, "joint", 0, 10_000)
    actor = _actor(agent.policy, sizes=(8,))
    seen = []  # (behaviour params, rollout, obs after it) of every collection

    def recording(actor, state, inv_temp):
        out = agent._collect(actor, state, inv_temp)
        seen.append((state.params, out[0], actor.obs.copy()))
        return out

    agent._pipeline = async_actor.Pipeline(recording)
    state = agent.init_state(alphas, actor.obs, jax.random.PRNGKey(1))
    one = jnp.float32(1.0)
    try:
        state, first, _ = agent.run_iteration(actor, state, one, next_inv_temp=one)
        _, second, _ = agent.run_iteration(actor, state, one, next_inv_temp=None)
    finally:
        agent.close()
    assert (first["policy_lag"], second["policy_lag"]) == (0.0, 1.0)
    behaviour, rollout, last_obs = seen[1]
    model = agent.model
    want_values = _group_values(model, behaviour, alphas, last_obs, (8,))
    learner_values = _group_values(model, state.params, alphas, last_obs, (8,))
    assert np.abs(want_values - learner_values).max() > 1e-3  # not vacuous
    args = [rollout[k] for k in ("rewards", "values", "dones")]
    want = _numpy_explained_variance(*args, want_values, c.ppo.gamma, c.ppo.gae_lambda)
    wrong = _numpy_explained_variance(*args, learner_values, c.ppo.gamma, c.ppo.gae_lambda)
    assert abs(want - wrong) > 1e-4
    np.testing.assert_allclose(second["explained_variance"], want, rtol=1e-4, atol=1e-5)
