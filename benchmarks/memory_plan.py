"""Memory plan of a preset (issue 21): what its programs need on one device, from XLA's
buffer assignment of the compiled programs (compiled, never run, unless ``--time``).

Prints JSON: per agent and ``net.remat`` level, per program (``act``: a forward pass of
every acting env; ``ppo_step``: one PPO step on a whole minibatch, batch norm over all
of it; ``dqn_step``: one DQN learner step) its ``peak_bytes`` (arguments + outputs +
temporaries, ``rldarts.run.memory.peak_bytes``), the parts, and the compile seconds;
with ``--time N`` the learner step is also run N times on zeros (only where it fits this
machine) and its mean seconds printed, the cost of recomputing.

    .venv/bin/python -m benchmarks.memory_plan --preset=paper [--agents=ppo,dqn]
        [--remat=none,cell,edge] [--programs=act,ppo_step,dqn_step] [--time=3]
        [--config.KEY=VALUE ...]
    .venv/bin/python -m benchmarks.memory_plan --probe   (does remat shrink this
        backend's plan at all? a plain chain of checkpointed blocks vs a lax.scan)
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time

import jax
import numpy as np

from experiments.configs import base
from rldarts.env import families
from rldarts.model import remat
from rldarts.run import compile_cache, memory
from rldarts.run import setup as setup_lib


def parse_preset_args(ap: argparse.ArgumentParser):
    """``--preset`` and the ``--config.KEY=VALUE`` overrides, beside ``ap``'s own flags:
    (args, overrides); a bad preset or argument ends in one line."""
    ap.add_argument("--preset", default="smoke", help=f"one of {', '.join(base.PRESETS)}")
    args, overrides = ap.parse_known_args()
    if args.preset not in base.PRESETS:
        raise SystemExit(f"error: unknown preset {args.preset!r}; valid: {', '.join(base.PRESETS)}")
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        raise SystemExit(f"error: unknown argument {bad[0]}; overrides are --config.KEY=VALUE")
    return args, overrides


def preset_config(preset: str, overrides: list[str]):
    """The preset's search config with ``--config.KEY=VALUE`` overrides (values parsed
    as Python literals where they parse, else kept as strings)."""
    c = base.build(preset)
    for item in overrides:
        key, _, text = item.removeprefix("--config.").partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        node = c
        *path, leaf = key.split(".")
        for part in path:
            node = node[part]
        if leaf not in node:
            raise SystemExit(f"error: --config.{key}: no such config key")
        node[leaf] = value
    return c


def run_seconds(program, args, repeats: int) -> float:
    """Mean seconds of ``program`` on zeros of ``args``' shapes (after one warm-up)."""
    zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), args)
    jax.block_until_ready(program(*zeros))
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(program(*zeros))
    return (time.perf_counter() - t0) / repeats


def plan_one(c, names, repeats: int) -> dict:
    s = setup_lib._build(c, None, require_supernet=False)
    env = families.spec(c.env_name)
    out = {}
    for name, (fn, args) in memory.programs(s.agent, s.alphas, env, names).items():
        t0 = time.perf_counter()
        parts = memory.peak_bytes(fn, args)
        parts["compile_s"] = round(time.perf_counter() - t0, 1)
        parts["peak_gib"] = round(parts["peak_bytes"] / memory.GIB, 3)
        if repeats and name in memory.STEP_PROGRAMS:
            parts["step_s"] = round(run_seconds(fn, args, repeats), 4)
        out[name] = parts
        print(json.dumps({c.agent: {c.net.remat: {name: parts}}}), file=sys.stderr, flush=True)
    s.agent.close()
    return out


def backend_remat_probe() -> dict:
    """Does this backend's plan shrink under remat? Temporaries (MiB) of the gradient of
    8 blocks of 6 tanh(x @ w) layers (x: 4096 x 512), each block checkpointed or not,
    written out in a row and as one ``lax.scan`` over the blocks."""

    def block(x, w):
        for _ in range(6):
            x = jax.numpy.tanh(x @ w)
        return x, None

    ws, x = np.full((8, 512, 512), 0.01, np.float32), np.ones((4096, 512), np.float32)
    out = {}
    for remat_on in (False, True):
        f = jax.checkpoint(block) if remat_on else block

        def chain(ws, x, f=f):
            for w in ws:
                x = f(x, w)[0]
            return x.sum()

        scan = lambda ws, x, f=f: jax.lax.scan(f, x, ws)[0].sum()
        for name, fn in (("chain", chain), ("scan", scan)):
            compiled = jax.jit(jax.grad(fn)).lower(ws, x).compile()
            temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
            out[f"{name}_{'remat' if remat_on else 'none'}_temp_mib"] = round(temp, 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", default="ppo,dqn")
    ap.add_argument("--remat", default="none,edge", help="levels: " + ",".join(remat.LEVELS))
    ap.add_argument("--programs", default="act,ppo_step,dqn_step")
    ap.add_argument("--time", type=int, default=0, help="run the learner step N times")
    ap.add_argument("--probe", action="store_true", help="only backend_remat_probe")
    args, overrides = parse_preset_args(ap)
    if args.probe:
        print(json.dumps({"backend": jax.default_backend(), **backend_remat_probe()}))
        return
    compile_cache.enable()
    names = tuple(args.programs.split(","))
    limit, where = memory.device_limit()
    result = {"preset": args.preset, "backend": jax.default_backend(), "overrides": overrides}
    result.update(limit_gib=round(limit / memory.GIB, 2), limit_is=where, plans={})
    for agent in args.agents.split(","):
        for level in args.remat.split(","):
            c = preset_config(args.preset, overrides)
            c.agent, c.net.remat = agent, remat.check(level)
            wanted = tuple(n for n in names if not n.endswith("_step") or n == f"{agent}_step")
            result["plans"].setdefault(agent, {})[level] = plan_one(c, wanted, args.time)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
