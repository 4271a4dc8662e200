"""Where a network's PPO gradient spends its time on this backend, per XLA thunk.

Jits the gradient of the PPO loss over ``--batch`` samples, split into ``--parts``
independent gradients as the CPU learner runs them (``ppo.CPU_PARTS``), records a
``jax.profiler`` trace with a Perfetto JSON (no TensorBoard needed) and prints the
thunks' summed durations per kind, most expensive first (milliseconds per call; the
names are XLA's fusion names with their numeric suffix dropped). This is how the
`reduce_window` average pools and the max pool's recomputed forward were found
(benchmarks/results/README.md, session 9).

    .venv/bin/python -m benchmarks.archive.profile_gradient [--network impala|cpu_demo|paper]
"""

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile

import jax

from benchmarks.archive.pool_formulations import random_minibatch
from benchmarks.ppo_throughput import network_config
from experiments.configs import base
from rldarts.learn import ppo, ppo_losses
from rldarts.run import setup


def thunk_times(fn, args, calls, directory):
    """{thunk kind: total microseconds over ``calls`` calls}, from a Perfetto trace."""
    jax.block_until_ready(fn(*args))
    jax.profiler.start_trace(directory, create_perfetto_trace=True)
    for _ in range(calls):
        jax.block_until_ready(fn(*args))
    jax.profiler.stop_trace()
    path = sorted(glob.glob(f"{directory}/**/*.json.gz", recursive=True))[-1]
    trace = json.load(gzip.open(path))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals, counts = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        # Host-side bookkeeping (Python frames, executor spans) is not device work.
        if (
            e.get("ph") != "X"
            or "dur" not in e
            or name.startswith(
                (
                    "$",
                    "Thunk",
                    "end:",
                    "Pjit",
                    "Common",
                    "Parse",
                    "Handle",
                    "Wait",
                    "Allocate",
                    "PythonRef",
                    "Threadpool",
                )
            )
        ):
            continue
        kind = re.sub(r"\.\d+$", "", name)
        totals[kind] += e["dur"]
        counts[kind] += 1
    return totals, counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--network", default="impala")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--parts", type=int, default=ppo.CPU_PARTS)
    ap.add_argument("--calls", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    c = network_config(args.network, base.get_base_config())
    s = setup.build(c, require_supernet=False)
    model, n = s.agent.model, args.batch
    batch = random_minibatch(n)
    params = model.init(jax.random.PRNGKey(0), batch["obs"][:1], s.alphas)

    def loss(params, alphas, part):
        logits, value = model.apply(params, part["obs"], alphas, 1.0)
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

    size = n // args.parts

    @jax.jit
    def gradient(params, alphas, batch):
        parts = [
            jax.grad(loss, argnums=(0, 1))(
                params, alphas, jax.tree.map(lambda x: x[i * size : (i + 1) * size], batch)
            )
            for i in range(args.parts)
        ]
        return jax.tree.map(lambda *g: sum(g), *parts)

    with tempfile.TemporaryDirectory() as directory:
        totals, counts = thunk_times(gradient, (params, s.alphas, batch), args.calls, directory)
    per_call = {k: v / args.calls / 1000 for k, v in totals.items()}
    print(
        json.dumps(
            {
                "network": args.network,
                "batch": n,
                "parts": args.parts,
                "backend": jax.default_backend(),
                "thunk_ms_total": round(sum(per_call.values()), 1),
                "top_thunks_ms": {
                    f"{k} (x{counts[k] // args.calls})": round(v, 1)
                    for k, v in sorted(per_call.items(), key=lambda kv: -kv[1])[: args.top]
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
