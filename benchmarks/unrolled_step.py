"""Second-order DARTS (``arch.mode=unrolled``): how far the hypergradient departs from
the first-order one as a function of the virtual step size xi (``arch.unrolled_lr``).

The unrolled alpha gradient is grad_alpha L_val(w - xi grad_w L_train(w, alpha), alpha)
(``rldarts.learn.arch``, exact by JAX). At xi -> 0 it is the first-order (``alternating``)
gradient grad_alpha L_val(w, alpha); the second-order term grows with xi. This script
takes a real rollout (Procgen, the search preset's supernet at its initial weights, the
PPO minibatches the learner would see: training columns / held-out columns), and for
each xi prints, averaged over ``--minibatches`` minibatch pairs:

* departure: ||g_xi - g_0|| / ||g_0|| (g_0: the first-order alpha gradient);
* cosine: cos(g_xi, g_0);
* step: ||xi grad_w L_train|| / ||w||, the virtual step relative to the weights;
* d_train: L_train(w') - L_train(w), the virtual step's effect on its own loss
  (negative: a descent step; positive: xi too large for a plain SGD step, unstable);
* d_val: L_val(w') - L_val(w).

    .venv/bin/python -m benchmarks.unrolled_step [--preset cpu_demo|smoke] [--game coinrun]
"""

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.configs import base
from rldarts.learn import arch, ppo, ppo_losses
from rldarts.learn.actor import Actor
from rldarts.run import compile_cache
from rldarts.run import setup as setup_lib

XIS = (1e-4, 5e-4, 1e-3, 3e-3, 1e-2, 2.5e-2, 5e-2, 1e-1)


def rollout_samples(c, setup, state):
    """One rollout of the initial policy on Procgen -> (training, held-out) sample
    sets, flattened, with GAE advantages and returns (as ``ppo.make_update``)."""
    agent = setup.agent
    factory = setup_lib.env_factory(c, agent, setup.num_heldout, setup.topology)
    actor = Actor(factory, agent.policy, jax.random.PRNGKey(c.seed), setup.topology)
    actor.start_segment(0)
    rollout, _ = ppo.collect_rollout(actor, state, c.ppo.num_steps, jnp.float32(1.0))
    actor.close()
    adv, ret = ppo_losses.gae_advantages(
        rollout["rewards"],
        rollout["values"],
        rollout["dones"],
        rollout["last_values"],
        c.ppo.gamma,
        c.ppo.gae_lambda,
    )
    data = {k: rollout[k] for k in ("obs", "actions", "log_probs", "values")}
    data.update(advantages=np.asarray(adv), returns=np.asarray(ret))
    n_train = c.ppo.num_envs - setup.num_heldout
    flat = lambda cols: {k: v[:, cols].reshape((-1,) + v.shape[2:]) for k, v in data.items()}
    return flat(slice(0, n_train)), flat(slice(n_train, None))


def minibatch(samples, index, count, rng):
    """Minibatch ``index`` of ``count`` of a shuffled sample set, advantages normalised."""
    n = len(samples["actions"])
    idx = rng.permutation(n)[index * (n // count) : (index + 1) * (n // count)]
    mb = {k: jnp.asarray(v[idx]) for k, v in samples.items()}
    mb["advantages"] = ppo_losses.normalize_advantages(mb["advantages"])
    return mb


def measure(loss_fn, params, alphas, train, held):
    """Per xi: the figures of the module docstring for one minibatch pair."""
    args = (jnp.float32(1.0), None)
    loss = lambda p, b: loss_fn(p, alphas, b, *args)[0]

    @jax.jit
    def at(xi):
        hyper = arch._make_unrolled_alpha_gradients(loss_fn, xi)(alphas, params, train, held, *args)
        w_grads = jax.grad(loss)(params, train)
        virtual = jax.tree.map(lambda w, g: w - xi * g, params, w_grads)
        return (
            hyper,
            xi * optax.tree.norm(w_grads) / optax.tree.norm(params),
            loss(virtual, train) - loss(params, train),
            loss(virtual, held) - loss(params, held),
        )

    first = jax.grad(lambda a: loss_fn(params, a, held, *args)[0])(alphas)
    g0 = jnp.concatenate([x.ravel() for x in jax.tree.leaves(first)])
    rows = []
    for xi in XIS:
        hyper, step, d_train, d_val = at(jnp.float32(xi))
        g = jnp.concatenate([x.ravel() for x in jax.tree.leaves(hyper)])
        rows.append(
            dict(
                departure=float(jnp.linalg.norm(g - g0) / jnp.linalg.norm(g0)),
                cosine=float(g @ g0 / (jnp.linalg.norm(g) * jnp.linalg.norm(g0))),
                step=float(step),
                d_train=float(d_train),
                d_val=float(d_val),
            )
        )
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu_demo", choices=("smoke", "cpu_demo"))
    p.add_argument("--game", default="coinrun")
    p.add_argument("--minibatches", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    try:
        cache = compile_cache.enable()  # the unrolled step compiles for minutes: once
    except ValueError as e:
        sys.exit(f"error: {e}")
    c = base.build(args.preset, network="darts_standard")
    c.env_name, c.seed, c.arch.mode = args.game, args.seed, "unrolled"
    setup = setup_lib.build(c, require_supernet=True)
    obs = np.zeros((1, 64, 64, 3), np.uint8)
    state = setup.agent.init_state(setup.alphas, obs, jax.random.PRNGKey(args.seed))
    train, held = rollout_samples(c, setup, state)
    loss_fn = ppo.make_loss(setup.agent.model, c.ppo)
    rng = np.random.default_rng(args.seed)
    count = c.ppo.num_minibatches
    per_mb = [
        measure(
            loss_fn,
            state.params,
            state.alphas,
            minibatch(train, i, count, rng),
            minibatch(held, i, count, rng),
        )
        for i in range(args.minibatches)
    ]
    for k, xi in enumerate(XIS):
        row = {name: float(np.mean([m[k][name] for m in per_mb])) for name in per_mb[0][k]}
        print(json.dumps(dict(xi=xi, **row)))
    print(cache.summary(), file=sys.stderr)


if __name__ == "__main__":
    main()
