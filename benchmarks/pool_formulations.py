"""Max pool formulations in the real IMPALA-CNN PPO minibatch step (2048 samples,
microbatched as the CPU learner runs it), timed alternately in one process:

* ``views_autodiff``: the max over strided views differentiated by JAX (the library's
  max pool up to session 8; its backward pads every view's gradient with interior
  padding);
* ``custom_vjp``: ``rldarts.ops.max_pool`` (winner index recorded in the forward, the
  gradient added into stride**2 phase grids).

    .venv/bin/python -m benchmarks.pool_formulations [--repeats 3]
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_dict

from experiments.configs import base
from rldarts import arch, networks, ops
from rldarts.agents import ppo


def views_autodiff(x, size=3, stride=2):
    b, h, w, c = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph, pw = max((oh - 1) * stride + size - h, 0), max((ow - 1) * stride + size - w, 0)
    xp = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
                 constant_values=-jnp.inf)
    views = [jax.lax.slice(xp, (0, i, j, 0),
                           (b, i + (oh - 1) * stride + 1, j + (ow - 1) * stride + 1, c),
                           (1, stride, stride, 1)) for i in range(size) for j in range(size)]
    out = views[0]
    for view in views[1:]:
        out = jnp.maximum(out, view)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    c = base.get_base_config()
    model = networks.Agent(networks.make_torso("impala", depths=tuple(c.net.depths),
                                               dense=c.net.dense),
                           networks.PolicyValueHead(15))
    n = c.ppo.num_envs * c.ppo.num_steps // c.ppo.num_minibatches
    rng = np.random.default_rng(0)
    batch = jax.device_put({
        "obs": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
        "actions": rng.integers(0, 15, n).astype(np.int32),
        "log_probs": np.full(n, -2.7, np.float32), "values": np.zeros(n, np.float32),
        "advantages": rng.normal(0, 1, n).astype(np.float32),
        "returns": np.ones(n, np.float32)})
    params = model.init(jax.random.PRNGKey(0), batch["obs"][:1])
    weight_opt = ppo.make_weight_optimizer(c.ppo, 100)
    alpha_opt = arch.make_alpha_optimizer(c.arch, weight_opt)
    frozen = config_dict.ConfigDict(dict(mode="frozen"))
    step_args = (params, {}, weight_opt.init(params), alpha_opt.init({}), batch, None, 1.0)
    steps, library_pool = {}, ops.max_pool
    for name, pool in (("views_autodiff", views_autodiff), ("custom_vjp", library_pool)):
        ops.max_pool = pool  # the networks look it up when the step is traced
        steps[name] = ppo.make_minibatch_step(model, c.ppo, frozen, weight_opt, alpha_opt,
                                              [n])
        jax.block_until_ready(steps[name](*step_args))
    ops.max_pool = library_pool
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            jax.block_until_ready(step(*step_args))
            times[name].append(round(time.perf_counter() - t0, 3))
    medians = {name: float(np.median(t)) for name, t in times.items()}
    print(json.dumps({"jax": jax.__version__, "minibatch": n, "step_s": times,
                      "speedup_of_custom_vjp": round(medians["views_autodiff"]
                                                     / medians["custom_vjp"], 3)}, indent=1))


if __name__ == "__main__":
    main()
