"""Pool formulations inside real PPO minibatch steps (2048 samples, microbatched as the
CPU learner runs them), the variants of a case timed alternately in one process:

* ``max`` (IMPALA-CNN): ``views_autodiff``, the max over strided views differentiated
  by JAX (the library's max pool up to session 8: its backward pads every view's
  gradient with interior padding), ``custom_vjp_fused``, ``rldarts.model.ops.max_pool`` with
  its forward left to XLA's fusion (``pooling._materialized`` off), and ``custom_vjp``,
  ``rldarts.model.ops.max_pool`` as it is;
* ``avg`` (the ``cpu_demo`` supernet, joint mode: every strided parameter-free op
  starts with a 3x3 average pool): ``reduce_window``, ``nn.avg_pool`` with
  ``count_include_pad=False`` (the library's up to session 8), vs ``custom_vjp``,
  ``rldarts.model.ops.avg_pool``.

    .venv/bin/python -m benchmarks.archive.pool_formulations [--cases max,avg] [--repeats 3]
"""

import argparse
import json
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import base
from rldarts.learn import arch, ppo
from rldarts.model import ops, pooling
from rldarts.run import setup


def random_minibatch(n: int, seed: int = 0) -> dict:
    """A PPO minibatch of ``n`` random Procgen-shaped samples, on the device."""
    rng = np.random.default_rng(seed)
    return jax.device_put(
        {
            "obs": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
            "actions": rng.integers(0, 15, n).astype(np.int32),
            "log_probs": np.full(n, -2.7, np.float32),
            "values": np.zeros(n, np.float32),
            "advantages": rng.normal(0, 1, n).astype(np.float32),
            "returns": np.ones(n, np.float32),
        }
    )


def views_autodiff(x, size=3, stride=2):
    b, h, w, c = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph, pw = max((oh - 1) * stride + size - h, 0), max((ow - 1) * stride + size - w, 0)
    xp = jnp.pad(
        x,
        ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
        constant_values=-jnp.inf,
    )
    views = [
        jax.lax.slice(
            xp,
            (0, i, j, 0),
            (b, i + (oh - 1) * stride + 1, j + (ow - 1) * stride + 1, c),
            (1, stride, stride, 1),
        )
        for i in range(size)
        for j in range(size)
    ]
    out = views[0]
    for view in views[1:]:
        out = jnp.maximum(out, view)
    return out


def reduce_window(x, size=3, stride=1):
    return nn.avg_pool(x, (size, size), (stride, stride), padding="SAME", count_include_pad=False)


def impala(c):
    c.network = "impala"
    return c


def cpu_demo_supernet(c):
    c.net = base.cpu_demo(base.get_base_config()).net
    return c


def unmaterialized(fn, x):
    return fn(x)


# case -> (network config, {variant: {(module, attribute): implementation}})
CASES = {
    "max": (
        impala,
        {
            "views_autodiff": {(ops, "max_pool"): views_autodiff},
            "custom_vjp_fused": {(pooling, "_materialized"): unmaterialized},
            "custom_vjp": {},
        },
    ),
    "avg": (
        cpu_demo_supernet,
        {"reduce_window": {(ops, "avg_pool"): reduce_window}, "custom_vjp": {}},
    ),
}


def time_case(name, repeats):
    configure, variants = CASES[name]
    c = configure(base.get_base_config())
    s = setup.build(c, require_supernet=False)
    agent = s.agent
    n = c.ppo.num_envs * c.ppo.num_steps // c.ppo.num_minibatches
    batch = random_minibatch(n)
    state = agent.init_state(s.alphas, batch["obs"][:1], jax.random.PRNGKey(0))
    weight_opt = ppo.make_weight_optimizer(c.ppo, 100)
    alpha_opt = arch.make_alpha_optimizer(agent.arch_cfg, weight_opt)
    step_args = (state.arch_state, batch, None, 1.0)
    steps = {}
    for variant, swaps in variants.items():
        library = {key: getattr(*key) for key in swaps}
        for (module, attr), impl in swaps.items():
            setattr(module, attr, impl)  # looked up when the step is traced
        steps[variant] = ppo.make_minibatch_step(
            agent.model, c.ppo, agent.arch_cfg, weight_opt, alpha_opt, [n], "host"
        )
        jax.block_until_ready(steps[variant](*step_args))
        for (module, attr), impl in library.items():
            setattr(module, attr, impl)
    times = {variant: [] for variant in steps}
    for _ in range(repeats):
        for variant, step in steps.items():
            t0 = time.perf_counter()
            jax.block_until_ready(step(*step_args))
            times[variant].append(round(time.perf_counter() - t0, 3))
    median = {variant: float(np.median(t)) for variant, t in times.items()}
    first = next(iter(median))
    return {
        "case": name,
        "network": c.network,
        "arch_mode": agent.arch_cfg.mode,
        "minibatch": n,
        "step_s": times,
        "speedup_over_" + first: {
            v: round(median[first] / m, 3) for v, m in median.items() if v != first
        },
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="max,avg")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runs = [time_case(name, args.repeats) for name in args.cases.split(",")]
    print(json.dumps({"jax": jax.__version__, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
