"""The DM-Control encoders and SAC's learner step: the DrQ encoder against a NumPy
forward pass, the darts_dmc supernet with one-hot alphas equal to its fixed network, and
the step's invariants (the critic loss moves the encoder, critics and alphas but never
the actor head; the actor step moves only the actor head; the actor and the target EMA
on their periods; the same seed gives the same step)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import base
from rldarts.env.families import EnvSpec
from rldarts.learn import sac
from rldarts.model import cells, networks
from rldarts.model.genotypes import CellGenotype, NetworkGenotype

OPS = ("Conv3x3Relu", "SkipConnection", "Zero")


def _np_conv(x, w, b, stride):
    """VALID cross-correlation, NHWC x HWIO."""
    kh, kw = w.shape[:2]
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * oh : stride, j : j + stride * ow : stride, :]
            out += patch @ w[i, j]
    return out + b


def test_drq_encoder_matches_numpy():
    obs = np.random.default_rng(0).integers(0, 256, (2, 15, 15, 6), dtype=np.uint8)
    torso = networks.make_torso("drq", depths=(3,), dense=5)
    params = torso.init(jax.random.PRNGKey(0), jnp.asarray(obs))
    out = np.asarray(torso.apply(params, jnp.asarray(obs)))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    x = obs / 255.0
    for i in range(4):
        conv = p[f"Conv_{i}"]
        x = np.maximum(_np_conv(x, conv["kernel"], conv["bias"], 2 if i == 0 else 1), 0)
    assert x.shape == (2, 1, 1, 3)  # VALID 3x3: 15 -> 7 (stride 2) -> 5 -> 3 -> 1
    h = x.reshape(2, -1) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    ln = p["LayerNorm_0"]
    h = (h - h.mean(1, keepdims=True)) / np.sqrt(h.var(1, keepdims=True) + 1e-6)
    ref = np.tanh(h * ln["scale"] + ln["bias"])
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_darts_dmc_supernet_with_one_hot_alphas_equals_its_fixed_network():
    obs = jnp.asarray(np.random.default_rng(1).integers(0, 256, (3, 20, 20, 9)), jnp.uint8)
    nodes = (((0, "Conv3x3Relu"),), ((0, "SkipConnection"), (1, "Conv3x3Relu")))
    geno = NetworkGenotype({"normal": CellGenotype(nodes=nodes)})
    kw = dict(depths=(4,), dense=8, num_nodes=2, search_space=OPS)
    supernet = networks.make_torso("darts_dmc", **kw)
    fixed = networks.make_torso("darts_dmc", genotype=geno, **kw)
    alphas = {"normal": cells.one_hot_alphas(geno["normal"], OPS)}
    sp = supernet.init(jax.random.PRNGKey(0), obs, alphas)
    fp = fixed.init(jax.random.PRNGKey(1), obs)
    sub = jax.tree.map(lambda _, s: s, fp, _subset(sp, fp))
    out = supernet.apply(sp, obs, alphas)
    assert out.shape == (3, 8) and np.all(np.abs(np.asarray(out)) <= 1)
    np.testing.assert_allclose(np.asarray(out), np.asarray(fixed.apply(sub, obs)), atol=1e-3)
    assert set(networks.init_network_alphas("darts_dmc", OPS, 2)) == {"normal"}


def _subset(tree, template):
    if isinstance(template, dict):
        return {k: _subset(tree[k], v) for k, v in template.items()}
    return tree


def _agent(mode="joint", network="darts_dmc"):
    c = base.build("dmc_smoke", network=network)
    c.sac.batch_size, c.sac.hidden = 4, 8
    c.sac.actor_update_period, c.sac.target_update_period = 2, 3
    torso = networks.make_torso(network, depths=(2,), dense=4, num_nodes=2, search_space=OPS)
    spec = EnvSpec((16, 16, 9), np.dtype(np.uint8), 0, 2)
    agent = sac.Agent(c, torso, 0, mode, 0, 0, env_spec=spec)
    alphas = networks.init_network_alphas(network, OPS, 2) if mode != "frozen" else {}
    rng = np.random.default_rng(0)
    obs = lambda: rng.integers(0, 256, (4, 16, 16, 9), dtype=np.uint8)
    batch = {
        "obs": obs(),
        "next_obs": obs(),
        "actions": rng.uniform(-1, 1, (4, 2)).astype(np.float32),
        "rewards": rng.uniform(0, 1, 4).astype(np.float32),
        "discounts": np.full(4, 0.99, np.float32),
    }
    state = agent.init_state(alphas, batch["obs"], jax.random.PRNGKey(0))
    return agent, state, batch


def _moved(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_step_moves_each_part_only_by_its_own_loss_and_period():
    agent, s0, batch = _agent()
    step = agent.learner.step
    s1, m1 = step(s0, batch, None, 1.0)  # step 1: critic only (actor period 2)
    p0, p1 = s0.params["params"], s1.params["params"]
    assert _moved(p0["torso"], p1["torso"]) and _moved(p0["critic_head"], p1["critic_head"])
    assert not _moved(p0["actor_head"], p1["actor_head"])
    assert _moved(s0.alphas, s1.alphas) and float(m1["alpha_grad_norm"]) > 0
    assert float(s1.log_temperature) == float(s0.log_temperature)
    assert not _moved(s0.target_params, s1.target_params)
    s2, _ = step(s1, batch, None, 1.0)  # step 2: + the actor and the temperature
    p2 = s2.params["params"]
    assert _moved(p1["actor_head"], p2["actor_head"])
    assert float(s2.log_temperature) != float(s1.log_temperature)
    s3, _ = step(s2, batch, None, 1.0)  # step 3: + the target EMA (tau 0.01)
    assert not _moved(s0.target_params, s2.target_params)
    ref = jax.tree.map(lambda n, o: 0.01 * n + 0.99 * o, s3.params, s2.target_params)
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(s3.target_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    again, _ = step(s0, batch, None, 1.0)  # the same state and batch: the same step
    assert not _moved(again.params, s1.params)


def test_actor_loss_never_reaches_the_encoder_or_the_critics():
    agent, s0, batch = _agent(mode="frozen", network="drq")
    update = sac.make_actor_update(agent.model, agent.cfg, 2)
    feats = agent.model.apply(s0.params, batch["obs"], {}, 1.0, method="encode")
    (params, *_), metrics = update(
        s0.params,
        s0.actor_opt_state,
        s0.log_temperature,
        s0.temperature_opt_state,
        feats,
        jax.random.PRNGKey(3),
    )
    p0, p1 = s0.params["params"], params["params"]
    assert _moved(p0["actor_head"], p1["actor_head"])
    assert not _moved(p0["torso"], p1["torso"]) and not _moved(p0["critic_head"], p1["critic_head"])
    assert np.isfinite(float(metrics["actor_loss"]))


@pytest.mark.parametrize("deterministic", [False, True])
def test_policies_act_in_the_box(deterministic):
    agent, s0, batch = _agent(mode="frozen", network="drq")
    policy = sac.make_policy(agent.model, deterministic)
    a, _ = jax.jit(policy)(s0.params, {}, batch["obs"], jax.random.PRNGKey(0), 1.0)
    assert a.shape == (4, 2) and np.all(np.abs(np.asarray(a)) <= 1)
