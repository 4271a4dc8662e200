"""Op-recovery sanity check (no RL): does the alpha machinery find a known cell?

python -m experiments.op_recovery --seeds=0,1,2 --steps=300 [--mode=joint|alternating|unrolled]
    [--method=darts|gdas|pc_darts] [--partial_channels_k=2] [--out=FILE.json]

Prints, per seed, the teacher cell, the discretized supernet and the share of the
teacher's edges (input, op) recovered; then the mean and the chance level.
"""

import dataclasses
import sys

from absl import app, flags

SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "teacher/search seeds")
STEPS = flags.DEFINE_integer("steps", None, "alpha steps (default: RecoveryConfig's)")
MODE = flags.DEFINE_enum(
    "mode",
    None,
    ["joint", "alternating", "unrolled"],
    "arch.make_arch_step mode (default: RecoveryConfig's)",
)
METHOD = flags.DEFINE_enum(
    "method",
    None,
    ["darts", "gdas", "pc_darts"],
    "how the supernet mixes its ops (default: RecoveryConfig's)",
)
K = flags.DEFINE_integer("partial_channels_k", None, "pc_darts: 1/K of the channels")
OUT = flags.DEFINE_string("out", None, "optional JSON file for the full results")


def _edges(cell: dict) -> str:
    return " | ".join(",".join(f"{i}:{op}" for i, op in node) for node in cell["nodes"])


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    try:
        seeds = [int(s) for s in SEEDS.value]
    except ValueError:
        sys.exit(f"error: --seeds must be integers, got {SEEDS.value}")
    from rldarts.common.files import atomic_write_json
    from rldarts.report import op_recovery  # heavy imports after flag parsing

    overrides = {
        k: v
        for k, v in (
            ("steps", STEPS.value),
            ("mode", MODE.value),
            ("method", METHOD.value),
            ("partial_channels_k", K.value),
        )
        if v is not None
    }
    if overrides.get("steps", 1) <= 0:
        sys.exit("error: --steps must be positive")
    cfg = dataclasses.replace(op_recovery.RecoveryConfig(), **overrides)
    result = op_recovery.run(seeds, cfg)
    print(
        f"ops {cfg.ops}, {cfg.num_nodes} nodes, k={cfg.k}, mode {cfg.mode}, "
        f"method {cfg.method}, "
        f"{cfg.warmup_steps} warm-up + {cfg.steps} steps"
    )
    for r in result["per_seed"]:
        print(
            f"seed {r['seed']}: share {r['share']:.3f}  (loss {r['first_loss']:.3f} -> "
            f"{r['final_loss']:.4f})\n  teacher {_edges(r['teacher'])}\n"
            f"  found   {_edges(r['found'])}"
        )
    print(
        f"mean share {result['mean_share']:.3f}, chance {result['chance']:.3f} "
        f"({result['wall_s']:.1f} s)"
    )
    if OUT.value:
        atomic_write_json(OUT.value, result)


if __name__ == "__main__":
    app.run(main)
