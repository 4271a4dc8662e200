"""``ppo.rollout_loop``: a MinAtar rollout traced into one jitted scan (acting and the
gymnax step, ``Actor.act_scan``) is the rollout of the host loop (``collect_rollout``'s
Python loop of jitted policy calls and env steps): the same actions, observations,
rewards, episode ends, normalised rewards and finished episodes, and the same state
left behind (key stream, env carries, observations, normaliser statistics). The host
loop is the reference; it steps gymnax once per step from NumPy actions."""

import jax
import numpy as np
import pytest

from experiments.configs import base
from rldarts.learn import ppo, ppo_loops
from rldarts.learn.actor import Actor
from rldarts.run import config_checks, setup

NUM_STEPS = 24  # Breakout episodes under a near-uniform policy end within this many steps


def _setup(mode):
    c = base.build("minatar_smoke", network="darts_minatar")
    c.arch.mode = mode
    c.ppo.num_steps = NUM_STEPS
    s = setup.build(c, require_supernet=True)
    actors = [
        Actor(setup.env_factory(c, s.agent, s.num_heldout, s.topology), s.agent.policy, key)
        for key in (jax.random.PRNGKey(3),) * 2
    ]
    obs = np.zeros((s.agent.num_envs, 10, 10, 4), np.float32)
    state = s.agent.init_state(s.alphas, obs, jax.random.PRNGKey(0))
    for actor in actors:
        actor.start_segment(1)
    return s, actors, state


@pytest.mark.parametrize("mode", ["joint", "alternating"])  # one env group; two
def test_scan_rollout_is_the_host_loops(mode):
    s, (host, scanned), state = _setup(mode)
    assert len(host.envs) == (2 if mode == "alternating" else 1)
    assert scanned.steps_on_device
    inv_temp = 1.0
    for _ in range(2):  # twice: the second starts from the state the first left
        a, fin_a = ppo.collect_rollout(host, state, NUM_STEPS, inv_temp, "host")
        b, fin_b = ppo.collect_rollout(scanned, state, NUM_STEPS, inv_temp, "scan")
        for key in ("actions", "obs", "dones"):
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)
        assert b["rewards"].dtype == a["rewards"].dtype
        np.testing.assert_allclose(b["rewards"], a["rewards"], rtol=1e-6)
        for key in ("log_probs", "values", "last_values"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)
        assert a["dones"].any()  # episodes ended inside the rollout: autoreset is covered
        for g in range(len(fin_a)):
            for x, y in zip(fin_a[g], fin_b[g]):
                np.testing.assert_allclose(np.concatenate(y), np.concatenate(x))
        np.testing.assert_array_equal(np.asarray(scanned.key), np.asarray(host.key))
        np.testing.assert_array_equal(scanned.obs, host.obs)
        for e_host, e_scan in zip(host.envs, scanned.envs):
            for x, y in zip(
                jax.tree.leaves(e_host.venv.device_carry), jax.tree.leaves(e_scan.venv.device_carry)
            ):
                np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
            # Episode statistics and the reward normaliser's running statistics.
            for x, y in zip(
                jax.tree.leaves(e_host.state_dict()), jax.tree.leaves(e_scan.state_dict())
            ):
                np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-12)


def test_rollout_loop_resolution_and_refusals():
    assert ppo_loops.rollout_loop("auto", steps_on_device=True) == "scan"  # on CPU too
    assert ppo_loops.rollout_loop("auto", steps_on_device=False) == "host"
    assert ppo_loops.rollout_loop("scan", steps_on_device=True) == "scan"
    with pytest.raises(ValueError, match="valid choices: auto, scan, host"):
        ppo_loops.rollout_loop("fused", steps_on_device=True)
    c = base.build("smoke")  # Procgen: stepped by EnvPool on the host
    c.ppo.rollout_loop = "scan"
    with pytest.raises(ValueError) as e:
        config_checks.validate(c)
    assert str(e.value) == (
        "config ppo.rollout_loop='scan' needs JAX-native envs (minatar/*) on one actor "
        "device; valid choices here: auto, host"
    )
    c = base.build("minatar_smoke")
    c.ppo.rollout_loop = "scan"
    config_checks.validate(c)  # MinAtar: fine
    assert config_checks.fingerprint(c) == config_checks.fingerprint(base.build("minatar_smoke"))
