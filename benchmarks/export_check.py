"""Do a preset's programs lower for accelerators, from a machine without one (issue 21)?

Lowers with ``jax.export`` (StableHLO for the named platforms, no device needed) the
acting program (``act``), the PPO update as one ``lax.scan`` (``ppo_update``: GAE, the
shuffles and every epoch x minibatch step; what ``ppo.update_loop=scan`` runs on
accelerators) and the DQN learner step (``dqn_step``), for each platform. Prints JSON
per platform and program: lowered or the error, the module's size, its custom-call
targets. Exits 1 if a program fails to lower or calls something that only exists on
the CPU (a host callback, a CPU kernel: ``CPU_ONLY``), so a CPU-only trick in a hot path
(the conv and pool seams of ``rldarts.model``: chosen per platform with
``lax.platform_dependent``) is caught here, not on the first accelerator.

    .venv/bin/python -m benchmarks.export_check --platforms=tpu,cuda --preset=paper
        [--agents=ppo,dqn] [--config.KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from jax import export

from benchmarks.memory_plan import parse_preset_args, preset_config
from rldarts.env import families
from rldarts.run import memory
from rldarts.run import setup as setup_lib

PROGRAMS = {"ppo": ("act", "ppo_update"), "dqn": ("act", "dqn_step"), "sac": ("act", "sac_step")}
# Custom-call targets that exist only in the CPU runtime (host callbacks, LAPACK).
CPU_ONLY = re.compile(r"callback|cpu|lapack", re.IGNORECASE)
TARGET = re.compile(r"stablehlo\.custom_call @([\w.]+)|call_target_name = \"([\w.]+)\"")


def lower(fn, args, platform: str) -> dict:
    t0 = time.perf_counter()
    try:
        text = export.export(fn, platforms=[platform])(*args).mlir_module()
    except Exception as e:  # report every program, then fail
        return {"lowered": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
    targets = sorted({a or b for a, b in TARGET.findall(text)})
    bad = [t for t in targets if CPU_ONLY.search(t)]
    out = {"lowered": not bad, "module_chars": len(text), "custom_calls": targets}
    out["lower_s"] = round(time.perf_counter() - t0, 1)
    if bad:
        out["error"] = f"CPU-only custom calls: {', '.join(bad)}"
    return out


def check(preset: str, overrides, agents, platforms) -> dict:
    report = {}
    for agent in agents:
        c = preset_config(preset, overrides)
        c.agent, c.ppo.update_loop = agent, "scan"
        if c.net.remat == "auto":
            c.net.remat = "none"  # no device to plan for; pass --config.net.remat=...
        s = setup_lib._build(c, None, require_supernet=False)
        env = families.spec(c.env_name)
        found = memory.programs(s.agent, s.alphas, env, PROGRAMS[agent])
        for platform in platforms:
            for name, (fn, args) in found.items():
                result = lower(fn, args, platform)
                report.setdefault(platform, {})[f"{agent}:{name}"] = result
                print(json.dumps({platform: {f"{agent}:{name}": result}}), file=sys.stderr)
        s.agent.close()
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--platforms", default="tpu,cuda")
    ap.add_argument("--agents", default="ppo,dqn")
    args, overrides = parse_preset_args(ap)
    platforms = args.platforms.split(",")
    report = check(args.preset, overrides, args.agents.split(","), platforms)
    failed = [f"{p} {n}" for p, r in report.items() for n, x in r.items() if not x["lowered"]]
    print(json.dumps({"preset": args.preset, "platforms": report, "failed": failed}, indent=1))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
