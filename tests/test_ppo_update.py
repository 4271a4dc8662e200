"""PPO's two update loops: the one jitted ``lax.scan`` (accelerator default) makes the
same update as the host loop around jitted steps (CPU default, itself checked against
direct gradients in test_microbatch.py and by the learning test), in every arch mode,
with and without held-out columns; and the loop choice is validated."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import base
from rldarts.learn import ppo
from rldarts.model import networks
from rldarts.run import config_checks


class MixedTorso(nn.Module):
    """A one-edge 'supernet': softmax(alphas) mixes ReLU and tanh of a dense layer, so
    the loss has a gradient with respect to the alphas."""

    @nn.compact
    def __call__(self, obs, alphas=None, inverse_temperature=1.0):
        h = nn.Dense(16)(obs.reshape(obs.shape[0], -1).astype(jnp.float32) / 255.0)
        if not alphas:
            return nn.relu(h)
        w = jax.nn.softmax(alphas["edge"] * inverse_temperature)
        return w[0] * nn.relu(h) + w[1] * jnp.tanh(h)


def _rollout(rng, steps, envs, actions):
    return {
        "obs": rng.integers(0, 256, (steps, envs, 5, 5, 3), dtype=np.uint8),
        "actions": rng.integers(0, actions, (steps, envs)).astype(np.int32),
        "log_probs": rng.normal(-1.1, 0.1, (steps, envs)).astype(np.float32),
        "values": rng.normal(0, 1, (steps, envs)).astype(np.float32),
        "rewards": rng.normal(0, 1, (steps, envs)).astype(np.float32),
        "dones": (rng.random((steps, envs)) < 0.1).astype(np.float32),
        "last_obs": rng.integers(0, 256, (envs, 5, 5, 3), dtype=np.uint8),
        "last_values": rng.normal(0, 1, envs).astype(np.float32),
    }


@pytest.mark.parametrize("mode,heldout", [("joint", 0), ("alternating", 2), ("frozen", 0)])
def test_scan_and_host_loops_make_the_same_update(mode, heldout):
    c = base.get_base_config()
    c.ppo.num_envs, c.ppo.num_steps = 6, 8
    c.ppo.num_minibatches, c.ppo.update_epochs = 2, 3
    c.arch.mode = mode
    model = networks.Agent(MixedTorso(), networks.PolicyValueHead(3))
    rollout = _rollout(np.random.default_rng(0), 8, 6, 3)
    alphas = {} if mode == "frozen" else {"edge": jnp.array([0.3, -0.2])}
    state = ppo.init_state(
        model, c.ppo, c.arch, alphas, rollout["last_obs"], jax.random.PRNGKey(1), num_updates=100
    )
    results = {}
    for loop in ("host", "scan"):
        c.ppo.update_loop = loop
        update = ppo.make_update(model, c.ppo, c.arch, 6, heldout, num_updates=100)
        results[loop] = update(state, rollout, jnp.float32(1.0))
    (host_state, host_metrics), (scan_state, scan_metrics) = results["host"], results["scan"]
    np.testing.assert_array_equal(host_state.key, scan_state.key)
    for got, want in zip(jax.tree.leaves(scan_state), jax.tree.leaves(host_state)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert set(scan_metrics) == set(host_metrics)
    for name in host_metrics:
        np.testing.assert_allclose(
            scan_metrics[name], host_metrics[name], rtol=2e-5, atol=1e-6, err_msg=name
        )
    # Not vacuous: 6 steps moved the weights, and the alphas unless frozen.
    moved = lambda a, b: max(
        float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )
    assert moved(scan_state.params, state.params) > 1e-4
    if mode != "frozen":
        assert moved(scan_state.alphas, state.alphas) > 1e-5


def test_update_loop_choice_and_conflicts():
    assert ppo.update_loop("auto") == ("host" if jax.default_backend() == "cpu" else "scan")
    assert ppo.update_loop("scan") == "scan"
    c = base.get_base_config()
    c.ppo.update_loop = "device"
    with pytest.raises(
        ValueError, match="ppo.update_loop='device' is not valid; valid choices: auto, scan, host"
    ):
        config_checks.validate(c)
    c.ppo.update_loop, c.ppo.microbatch_size = "scan", 256
    model = networks.Agent(MixedTorso(), networks.PolicyValueHead(3))
    with pytest.raises(ValueError, match="ppo.microbatch_size=256 needs ppo.update_loop=host"):
        ppo.make_update(model, c.ppo, c.arch, c.ppo.num_envs, 0, num_updates=10)
    # Compute only: a run may resume with another loop.
    a, b = base.get_base_config(), base.get_base_config()
    b.ppo.update_loop = "scan"
    assert config_checks.fingerprint(a) == config_checks.fingerprint(b)
    assert "update_loop" not in config_checks.fingerprint(a)["ppo"]
