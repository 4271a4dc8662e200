"""The MinAtar env family (rldarts.env.minatar via rldarts.env.families) against gymnax
itself, the registry's refusals, and the 10x10 networks."""

import jax
import numpy as np
import pytest

from rldarts.env import families, minatar
from rldarts.model import networks, random_search


def _gymnax_reference(gymnax_id, seed, num_envs, actions):
    """Each env stepped alone by gymnax's own reset / step (no vmap, no jit of ours):
    env i's key is split(PRNGKey(seed), num_envs)[i], split once per call."""
    import gymnax

    env, params = gymnax.make(gymnax_id)
    keys = list(jax.random.split(jax.random.PRNGKey(seed), num_envs))
    states, obs0 = [], []
    for i in range(num_envs):
        keys[i], sub = jax.random.split(keys[i])
        o, s = env.reset(sub, params)
        obs0.append(np.asarray(o))
        states.append(s)
    out = []
    for a in actions:
        obs, rew, done = [], [], []
        for i in range(num_envs):
            keys[i], sub = jax.random.split(keys[i])
            o, states[i], r, term, trunc, _ = env.step(sub, states[i], int(a[i]), params)
            obs.append(np.asarray(o))
            rew.append(float(r))
            done.append(bool(term) or bool(trunc))
        out.append((np.stack(obs), np.asarray(rew, np.float32), np.asarray(done)))
    return np.stack(obs0), out


@pytest.mark.parametrize("game", ["breakout", "space_invaders"])
def test_vec_env_matches_gymnax_stepped_alone(game):
    n, steps = 3, 40
    venv = families.make_env(f"minatar/{game}", n, seed=11)
    actions = np.random.default_rng(0).integers(0, venv.num_actions, (steps, n))
    ref_obs0, ref = _gymnax_reference(minatar.GAMES[game].gymnax_id, 11, n, actions)
    obs = venv.reset()
    assert obs.dtype == np.float32 and obs.shape == (n, *venv.observation_shape)
    np.testing.assert_array_equal(obs, ref_obs0)
    dones = 0
    for a, (r_obs, r_rew, r_done) in zip(actions, ref):
        obs, rew, done, info = venv.step(a)
        np.testing.assert_array_equal(obs, r_obs)  # after a done: the new episode's
        np.testing.assert_array_equal(rew, r_rew)
        np.testing.assert_array_equal(done, r_done)
        assert info["final_obs"].shape == (done.sum(), *venv.observation_shape)
        dones += done.sum()
    assert dones > 0  # the comparison crossed episode boundaries


def test_game_table_matches_gymnax():
    import gymnax

    for game, g in minatar.GAMES.items():
        env, params = gymnax.make(g.gymnax_id)
        spec = families.spec(f"minatar/{game}")
        assert spec.observation_shape == tuple(env.observation_space(params).shape), game
        assert spec.num_actions == env.num_actions, game
    assert families.spec("starpilot") == families.EnvSpec((64, 64, 3), np.uint8, 15)


def test_seeds_give_reproducible_distinct_envs():
    actions = np.random.default_rng(0).integers(0, 5, (30, 4))

    def trajectory(seed):  # asterix: the first frame is the same for every seed
        venv = families.make_env("minatar/asterix", 4, seed=seed)
        return np.stack([venv.reset()] + [venv.step(a)[0] for a in actions])

    a, b, c = trajectory(1), trajectory(1), trajectory(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "name, message",
    [
        ("minatar/pong", "unknown MinAtar game 'minatar/pong'; valid MinAtar games: "),
        ("pong", "unknown env_name 'pong'; valid: the Procgen games bigfish"),
    ],
)
def test_unknown_env_name_one_line(name, message):
    with pytest.raises(ValueError) as e:
        families.make_env(name, 2)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert "minatar/space_invaders" in str(e.value)


@pytest.mark.parametrize("network", ["minatar_cnn", "darts_minatar"])
def test_minatar_networks_on_10x10(network):
    obs = np.random.default_rng(0).integers(0, 2, (5, 10, 10, 7)).astype(np.float32)
    torso = networks.make_torso(network, depths=(8,), dense=32, num_nodes=2)
    alphas = networks.init_network_alphas(network, num_nodes=2)
    params = torso.init(jax.random.PRNGKey(0), obs, alphas or None)
    out = torso.apply(params, obs, alphas or None)
    assert out.shape == (5, 32) and np.isfinite(np.asarray(out)).all()
    if network == "minatar_cnn":  # Young & Tian: a VALID 3x3 conv, 8x8x16 -> dense
        kernel = params["params"]["Dense_0"]["kernel"]
        assert kernel.shape == (8 * 8 * 8, 32)


def test_darts_minatar_fixed_cell_from_genotype():
    genotype = random_search.sample_network_genotype(
        networks.CELL_TYPES["darts_minatar"], "rl_darts_default", 2, 2, 0, 0
    )
    assert sorted(genotype.cells) == ["normal"]
    torso = networks.make_torso(
        "darts_minatar",
        depths=(8,),
        dense=16,
        num_nodes=2,
        genotype=genotype,
        search_space="rl_darts_default",
    )
    obs = np.zeros((2, 10, 10, 4), np.float32)
    params = torso.init(jax.random.PRNGKey(0), obs)
    assert torso.apply(params, obs).shape == (2, 16)
