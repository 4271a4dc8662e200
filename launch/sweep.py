"""Runs a protocol (experiments/configs/protocol.py), resumably, here or on Ray.

python -m launch.sweep --protocol=cpu_small --root=runs/cpu_small [--dry_run]
    [--engine=local|ray] [--ray_address=auto|host:port] [--ray_num_cpus=N]
    [--cpus_per_run=C] [--gpus_per_run=G] [--max_retries=R] [--agent=ppo|dqn|sac]
    [--milestones=0.25,0.5,1.0] [--report=DIR]

The runs and their order: launch/plan.py. `local` (default) runs them one after another
in this process; `ray` makes each run a Ray task (C CPUs, G GPUs, fractions allowed)
and runs independent ones in parallel, a retrain or milestone run once its search's
task has finished (launch/scheduler.py, launch/engines.py). A run whose workdir holds
its final checkpoint is skipped; a failed run is retried up to R times, and the binaries
resume an interrupted one from its last checkpoint, so re-running the sweep picks up
where it stopped. `--agent` runs the protocol with another agent (use another --root);
a protocol with several agents (minatar_claims: PPO and DQN) runs each in its own
folders of ROOT (search_ppo, search_dqn, ...), `--agent` narrowing it to one.
The sweep ends with a table of every run's state, attempts, wall time and workdir, and
with --report=DIR writes the evaluation report of ROOT there (experiments/report.py), so
one command runs an experiment, e.g. the cells along the search:
    python -m launch.sweep --protocol=cpu_small_milestones --root=R --report=R/report
or the paper's claims (the report's "Paper claims" section) on MinAtar:
    python -m launch.sweep --protocol=minatar_quick --root=R --report=R/report
"""

from __future__ import annotations

import math
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # also runnable as `python launch/sweep.py`
    sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

from experiments.configs import base  # noqa: E402
from experiments.configs import protocol as protocol_lib  # noqa: E402
from launch import engines, milestones, plan, scheduler  # noqa: E402
from launch.plan import expand, is_finished, write_random  # noqa: E402 (API)
from rldarts.run import errors  # noqa: E402

PROTOCOL = flags.DEFINE_string(
    "protocol", "cpu_small", f"one of {', '.join(protocol_lib.PROTOCOLS)}"
)
ROOT = flags.DEFINE_string(
    "root",
    None,
    "directory holding every run of the sweep (with --engine=ray: on a filesystem every node sees)",
)
DRY_RUN = flags.DEFINE_bool("dry_run", False, "print the commands, run nothing")
ENGINE = flags.DEFINE_string("engine", "local", f"one of {', '.join(engines.ENGINES)}")
RAY_ADDRESS = flags.DEFINE_string(
    "ray_address", "", "ray: '' starts a local Ray instance, 'auto' or host:port joins a cluster"
)
RAY_NUM_CPUS = flags.DEFINE_integer(
    "ray_num_cpus", 0, "ray, local instance: CPUs it may use (0: all)"
)
CPUS_PER_RUN = flags.DEFINE_float("cpus_per_run", 1.0, "ray: CPUs reserved per run")
GPUS_PER_RUN = flags.DEFINE_float(
    "gpus_per_run",
    0.0,
    "ray: GPUs per run; a fraction < 1 shares a GPU (XLA memory capped at that fraction)",
)
MAX_RETRIES = flags.DEFINE_integer(
    "max_retries", 2, "retries of a failed run (it resumes from its last checkpoint)"
)
AGENT = flags.DEFINE_string(
    "agent", None, f"override the protocol's agent: one of {', '.join(protocol_lib.AGENTS)}"
)
REPORT = flags.DEFINE_string(
    "report", None, "after the sweep, write the report of --root to this folder"
)
MILESTONES = flags.DEFINE_list(
    "milestones",
    None,
    "override the protocol's milestones: fractions of the search budget in (0, 1]; '' for none",
)


def _prepare(run: plan.Run) -> None:
    if run.kind == "milestone":
        milestones.write_milestone(run)


def _dry_run(protocol: dict, runs: list[plan.Run], root: str, log) -> list[scheduler.Result]:
    out = []
    if any(r.kind == "random" for r in runs):
        log(
            f"# write {protocol['baselines']['random']['num_samples']} random genotypes to "
            f"{plan.random_genotype_dir(root)}"
        )
    for r in runs:
        if is_finished(r.workdir, r.total_env_steps):
            log(f"# skip (finished, {r.total_env_steps:,} env steps): {r.workdir}")
            out.append(scheduler.Result(r, scheduler.SKIPPED, finished=True))
            continue
        if r.after:
            log(
                f"# after {r.after} has finished:"
                + (
                    f" write its genotype at {r.milestone:g} of {r.search_budget:,} env "
                    f"steps to {r.genotype}"
                    if r.kind == "milestone"
                    else ""
                )
            )
        log(r.command)
    return out


def sweep(
    protocol: dict, root: str, dry_run: bool = False, log=print, engine="local", **options
) -> list[scheduler.Result]:
    """Executes (or, dry, prints) the protocol's runs; one Result per run (dry: per run
    skipped as finished). `engine`: a name or an engine object; `options`: see
    engines.make_engine (max_retries, address, num_cpus, cpus_per_run,
    gpus_per_run; echo for the local engine); the test hook comes from KILL_HOOK_ENV."""
    root = os.path.abspath(root)
    runs = expand(protocol, root)
    foreign = plan.foreign_agent_runs(runs)  # each run against its own agent
    if foreign:
        raise ValueError(
            f"{root} holds runs of another agent than {'/'.join(plan.agents(protocol))!r} "
            f"(e.g. {foreign[0]}); use another --root"
        )
    if dry_run:
        return _dry_run(protocol, runs, root, log)
    if any(r.kind == "random" for r in runs):
        log(
            f"# {len(write_random(protocol, root))} random genotypes in "
            f"{plan.random_genotype_dir(root)}"
        )
    if isinstance(engine, str):
        hook = os.environ.get(engines.KILL_HOOK_ENV)
        runner = engines.make_engine(
            engine,
            engines.new_sweep_id(),
            log=log,
            kill_workdir=os.path.join(root, hook) if hook else None,
            **options,
        )
    else:  # an engine object (tests)
        runner = engine
    try:
        results = scheduler.schedule(runs, runner, log, _prepare)
    finally:
        runner.close()
    log(scheduler.table(results, root))
    return results


def _check_flags() -> None:
    if ENGINE.value not in engines.ENGINES:
        raise ValueError(
            f"unknown engine {ENGINE.value!r}; valid engines: {', '.join(engines.ENGINES)}"
        )
    if MAX_RETRIES.value < 0:
        raise ValueError(f"--max_retries={MAX_RETRIES.value} must be >= 0")
    if ENGINE.value == "local" and (
        RAY_ADDRESS.value
        or RAY_NUM_CPUS.value
        or flags.FLAGS["cpus_per_run"].present
        or flags.FLAGS["gpus_per_run"].present
    ):
        raise ValueError(
            "--ray_address, --ray_num_cpus, --cpus_per_run and --gpus_per_run need --engine=ray"
        )
    g, c = GPUS_PER_RUN.value, CPUS_PER_RUN.value
    if not (g >= 0 and (g <= 1 or g == math.floor(g))):
        raise ValueError(
            f"--gpus_per_run={g} must be a fraction in [0, 1] or a whole number of GPUs"
        )
    if not c > 0 or RAY_NUM_CPUS.value < 0:
        raise ValueError(f"--cpus_per_run={c} must be > 0 and --ray_num_cpus >= 0")
    if RAY_ADDRESS.value and RAY_NUM_CPUS.value:
        raise ValueError(
            "--ray_num_cpus sizes a local Ray instance; a cluster "
            "(--ray_address) brings its own CPUs"
        )


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    if not ROOT.value:
        sys.exit("error: --root=DIR is required")
    try:
        _check_flags()
        protocol = protocol_lib.get_protocol(PROTOCOL.value, AGENT.value, MILESTONES.value)
        results = sweep(
            protocol,
            ROOT.value,
            DRY_RUN.value,
            engine=ENGINE.value,
            max_retries=MAX_RETRIES.value,
            address=RAY_ADDRESS.value,
            num_cpus=RAY_NUM_CPUS.value,
            cpus_per_run=CPUS_PER_RUN.value,
            gpus_per_run=GPUS_PER_RUN.value,
        )
        if REPORT.value and not DRY_RUN.value:
            from rldarts.report import writer as report  # matplotlib, JAX: only now

            path = report.write_report(
                [os.path.abspath(ROOT.value)],
                os.path.abspath(REPORT.value),
                presets=base.preset_dicts(),
            )
            print(f"report: {path}")
    except ValueError as e:
        errors.exit_with(e)
    if any(r.state == scheduler.FAILED for r in results):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
