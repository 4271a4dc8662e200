"""launch/sweep.py: protocols, expansion, dry run, skipping finished runs, missing
genotypes, flag errors, the local engine (retries, log, no Ray import). Ray, milestones
and the scheduler: tests/test_sweep_ray.py."""

import os
import subprocess
import sys
import threading

import pytest
from _binaries import ROOT, load_sweep_module

from experiments.configs import base
from experiments.configs.protocol import get_protocol
from launch import engines, plan, scheduler
from rldarts.env import procgen_scores
from rldarts.model.genotypes import NetworkGenotype

sweep = load_sweep_module()

BUDGET = base.build("cpu_demo").total_env_steps


def test_protocols():
    small = get_protocol("cpu_small")
    assert small["games"] == ["starpilot"] and small["seeds"] == [0, 1]
    assert small["search"]["preset"] == "cpu_demo"
    assert small["retrain"]["config"] == "experiments/configs/train.py"
    assert small["baselines"]["random"]["num_samples"] == 2
    assert small["search"]["total_env_steps"] == BUDGET
    paper = get_protocol("paper")
    assert sorted(paper["games"]) == sorted(procgen_scores.load())
    assert len(paper["games"]) == 16 and paper["seeds"] == [0, 1, 2]
    assert {paper[k]["total_env_steps"] for k in ("search", "retrain")} == {25_000_000}
    assert paper["baselines"]["impala"]["total_env_steps"] == 25_000_000
    assert paper["baselines"]["random"]["num_samples"] == 10
    assert small["milestones"] == paper["milestones"] == []
    assert get_protocol("paper_milestones")["milestones"] == [0.25, 0.5, 0.75, 1.0]
    assert get_protocol("cpu_small_milestones")["search"] == small["search"]
    smoke = get_protocol("smoke")
    assert (smoke["games"], smoke["seeds"], smoke["milestones"]) == (["starpilot"], [0], [0.5, 1.0])
    assert smoke["search"]["preset"] == "smoke"
    assert smoke["search"]["total_env_steps"] == base.build("smoke").total_env_steps
    assert smoke["baselines"]["random"]["num_samples"] == 1
    assert get_protocol("smoke", agent="dqn")["agent"] == "dqn"
    assert get_protocol("smoke", milestones=["1", "0.25", "0.25"])["milestones"] == [0.25, 1]
    assert get_protocol("smoke", milestones=[])["milestones"] == []
    with pytest.raises(ValueError, match="cpu_small"):
        get_protocol("nope")
    with pytest.raises(ValueError, match="valid agents: ppo, dqn"):
        get_protocol("smoke", agent="a2c")
    for bad in ("0", "1.5", "-0.5", "nan"):
        with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
            get_protocol("smoke", milestones=[bad])
    with pytest.raises(ValueError, match="not a number"):
        get_protocol("smoke", milestones=["half"])


def test_expansion_order_and_commands(tmp_path):
    runs = sweep.expand(get_protocol("cpu_small"), str(tmp_path))
    got = [(r.kind, r.game, r.seed, os.path.relpath(r.workdir, tmp_path)) for r in runs]
    assert got == [
        # Unit by unit (seed by seed): a sweep stopped part-way leaves whole units.
        ("search", "starpilot", 0, "search/starpilot/seed0"),
        ("retrain", "starpilot", 0, "retrain/starpilot/seed0"),
        ("impala", "starpilot", 0, "impala/starpilot/seed0"),
        ("random", "starpilot", 0, "random/starpilot/seed0/random_000"),
        ("random", "starpilot", 0, "random/starpilot/seed0/random_001"),
        ("search", "starpilot", 1, "search/starpilot/seed1"),
        ("retrain", "starpilot", 1, "retrain/starpilot/seed1"),
        ("impala", "starpilot", 1, "impala/starpilot/seed1"),
        ("random", "starpilot", 1, "random/starpilot/seed1/random_000"),
        ("random", "starpilot", 1, "random/starpilot/seed1/random_001"),
    ]
    common = [
        "--config.env_name=starpilot",
        f"--config.total_env_steps={BUDGET}",
        "--config.agent=ppo",
    ]
    search, retrain, impala, rnd = runs[5], runs[6], runs[7], runs[9]
    assert search.argv[:4] == [
        sys.executable,
        "-m",
        "experiments.search",
        "--config=experiments/configs/search.py:cpu_demo",
    ]
    assert set(
        common
        + [f"--workdir={search.workdir}", "--config.seed=1", "--config.network=darts_standard"]
    ) <= set(search.argv)
    assert retrain.argv[2:4] == [
        "experiments.train",
        "--config=experiments/configs/train.py:cpu_demo",
    ]
    assert f"--config.genotype={tmp_path}/search/starpilot/seed1/genotype.json" in retrain.argv
    assert "--config.network=darts_standard" in retrain.argv
    assert "--config.network=impala" in impala.argv
    assert not any(a.startswith("--config.genotype") for a in impala.argv)
    assert f"--config.genotype={tmp_path}/random_genotypes/random_001/genotype.json" in rnd.argv
    assert retrain.after == str(tmp_path / "search/starpilot/seed1")
    assert not any(r.after for r in runs if r.kind != "retrain")
    assert len(sweep.expand(get_protocol("paper"), str(tmp_path))) == 16 * 3 * (3 + 10)
    assert len(sweep.expand(get_protocol("paper_milestones"), str(tmp_path))) == 16 * 3 * 17


def test_milestone_runs_and_agent_override(tmp_path):
    runs = sweep.expand(get_protocol("cpu_small_milestones", agent="dqn"), str(tmp_path))
    assert all("--config.agent=dqn" in r.argv for r in runs)
    ms = [r for r in runs if r.kind == "milestone"]
    assert [(r.seed, os.path.relpath(r.workdir, tmp_path)) for r in ms] == [
        (s, f"milestone/starpilot/seed{s}/m{f}")
        for s in (0, 1)
        for f in ("0.25", "0.5", "0.75", "1.0")
    ]
    m = ms[5]  # seed 1 at 0.5
    geno = tmp_path / "milestone_genotypes/starpilot/seed1/m0.5/genotype.json"
    assert (m.milestone, m.search_budget, m.genotype) == (0.5, BUDGET, str(geno))
    assert m.after == str(tmp_path / "search/starpilot/seed1")
    assert m.argv[2:4] == ["experiments.train", "--config=experiments/configs/train.py:cpu_demo"]
    assert f"--config.genotype={geno}" in m.argv and runs[-1] is ms[-1]


def _fake_run(workdir, env_steps, iteration, checkpoint=True):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "metrics.csv"), "w") as f:
        f.write("env_steps,iteration,loss\n")
        f.write(f"{env_steps // 2},{iteration // 2},0.5\n{env_steps},{iteration},0.4\n")
    if checkpoint:
        os.makedirs(os.path.join(workdir, "checkpoints", str(iteration)))


def test_dry_run_prints_commands_and_skips_finished_runs(tmp_path):
    iters = BUDGET // (32 * 64)
    _fake_run(tmp_path / "search/starpilot/seed0", BUDGET, iters)  # finished
    _fake_run(tmp_path / "search/starpilot/seed1", BUDGET - 2048, iters - 1)  # interrupted
    _fake_run(tmp_path / "impala/starpilot/seed0", BUDGET, iters, checkpoint=False)
    lines = []
    out = sweep.sweep(
        get_protocol("cpu_small", milestones=[0.5]), str(tmp_path), dry_run=True, log=lines.append
    )
    assert [r.run.workdir for r in out] == [str(tmp_path / "search/starpilot/seed0")]
    assert lines[0].startswith("# write 2 random genotypes")
    assert lines[1].startswith("# skip (finished")
    commands = [line for line in lines if not line.startswith("#")]
    assert len(commands) == 9 + 2
    assert "--workdir=" + str(tmp_path / "impala/starpilot/seed0") in commands[1]
    assert "--workdir=" + str(tmp_path / "search/starpilot/seed1") in commands[5]
    assert lines[-2] == (
        f"# after {tmp_path}/search/starpilot/seed1 has finished: write its "
        f"genotype at 0.5 of {BUDGET:,} env steps to {tmp_path}/milestone_"
        "genotypes/starpilot/seed1/m0.5/genotype.json"
    )
    assert not (tmp_path / "random_genotypes").exists()  # a dry run writes nothing
    assert sweep.is_finished(str(tmp_path / "search/starpilot/seed0"), BUDGET)
    assert not sweep.is_finished(str(tmp_path / "search/starpilot/seed0"), BUDGET + 1)
    assert not sweep.is_finished(str(tmp_path / "nothing"), BUDGET)


class FakeEngine:
    """Stands in for the binaries: a search leaves a genotype, except the failing one."""

    capacity = 1

    def __init__(self, genotype_text, fail=()):
        self.genotype_text, self.fail, self.calls, self.done = genotype_text, fail, [], {}

    def submit(self, run):
        self.calls.append(run.argv)
        ok = not any(run.workdir.endswith(f) for f in self.fail)
        if ok and run.kind == "search":
            os.makedirs(run.workdir)
            with open(os.path.join(run.workdir, "genotype.json"), "w") as f:
                f.write(self.genotype_text)
        handle = object()
        self.done[handle] = scheduler.Result(
            run, scheduler.DONE if ok else scheduler.FAILED, 1.0, 1, finished=ok
        )
        return handle

    def wait(self, handles):
        return handles[0], self.done.pop(handles[0])

    def close(self):
        pass


def test_run_skips_retrain_without_genotype_and_writes_random_genotypes(tmp_path):
    protocol = get_protocol("cpu_small")
    genotype_text = open(sweep.write_random(protocol, str(tmp_path / "other"))[0]).read()
    fake = FakeEngine(genotype_text, fail=["search/starpilot/seed1"])
    lines = []
    out = sweep.sweep(protocol, str(tmp_path / "root"), log=lines.append, engine=fake)
    unit = ["experiments.search"] + ["experiments.train"] * 4  # search, retrain, impala, 2 random
    assert [a[2] for a in fake.calls] == unit + unit[:1] + unit[2:]  # no retrain of seed 1
    root = tmp_path / "root"
    state = {os.path.relpath(r.run.workdir, root): r.state for r in out}
    assert state.pop("search/starpilot/seed1") == "failed"
    assert state.pop("retrain/starpilot/seed1") == "skipped"
    assert set(state.values()) == {"done"} and len(state) == 8
    assert any(
        line.startswith("# skipped retrain starpilot seed 1: its search")
        and line.endswith("search/starpilot/seed1 is failed")
        for line in lines
    )
    assert "| retrain starpilot seed 1 | skipped | 0 | - | retrain/starpilot/seed1 |" in (lines[-1])
    assert lines[-1].endswith("8 done, 1 skipped, 1 failed")
    for i in range(2):
        g = NetworkGenotype.load(str(root / f"random_genotypes/random_{i:03d}/genotype.json"))
        assert set(g.cells) == {"normal", "reduction"}
        # Made from the protocol's config: the file alone rebuilds the trained network.
        demo = base.build("cpu_demo")
        assert g.found_with.method == "random" and g.found_with.network == "darts_standard"
        assert (g.found_with.depths, g.found_with.dense, g.found_with.first_conv) == (
            tuple(demo.net.depths),
            demo.net.dense,
            demo.net.first_conv,
        )


def _script(code):
    """A stand-in binary: python -c code, as a Run's argv (workdir given by the test)."""
    return [sys.executable, "-c", code]


def test_local_engine_retries_resumes_and_logs(tmp_path):
    # Attempt 1 writes a checkpoint then hangs: the test hook kills it. Attempt 2 sees the
    # checkpoint ("resuming") and fails with exit 3; attempt 3 succeeds.
    work = tmp_path / "w"
    code = (
        f"import os, sys, time; n = len(os.listdir('{work}/n')) "
        f"if os.path.isdir('{work}/n') else 0; os.makedirs(f'{work}/n/{{n}}')\n"
        "print('attempt', n + 1, flush=True)\n"
        f"if n == 0: os.makedirs('{work}/checkpoints/2'); time.sleep(60)\n"
        f"print('resuming' if os.path.isdir('{work}/checkpoints/2') else 'fresh')\n"
        "sys.exit(3 if n == 1 else 0)"
    )
    run = plan.Run("impala", "starpilot", 0, str(work), 10, _script(code))
    lines, echoed = [], []
    eng = engines.LocalEngine(
        "sid", max_retries=2, kill_workdir=str(work), log=lines.append, echo=echoed.append
    )
    _, result = eng.wait([eng.submit(run)])
    assert (result.state, result.attempts, result.finished) == ("done", 3, True)
    assert 0 < result.wall_s < 30
    assert echoed == ["attempt 1", "attempt 2", "resuming", "attempt 3", "resuming"]
    log = (work / engines.LOG_FILE).read_text().splitlines()
    assert [ln for ln in log if ln.startswith("=== exit")] == [
        "=== exit -9 (test hook: killed after its first checkpoint) ===",
        "=== exit 3 ===",
        "=== exit 0 ===",
    ]
    assert sum(ln.startswith("=== sweep sid attempt start") for ln in log) == 3
    assert lines == [
        "# exit -9: retry 1 of 2, impala starpilot seed 0",
        "# exit 3: retry 2 of 2, impala starpilot seed 0",
    ]
    # No retries left: the run fails, and the note points at its log.
    failing = plan.Run(
        "impala", "starpilot", 1, str(tmp_path / "f"), 10, _script("import sys; sys.exit(5)")
    )
    eng = engines.LocalEngine("sid2", max_retries=0, log=lines.append, echo=echoed.append)
    _, result = eng.wait([eng.submit(failing)])
    assert (result.state, result.attempts) == ("failed", 1)
    assert result.note == f"exit 5; log: {tmp_path / 'f' / engines.LOG_FILE}"


def test_local_engine_does_not_import_ray(tmp_path):
    code = (
        "import sys; from launch import engines, plan, scheduler; import launch.sweep\n"
        f"run = plan.Run('impala', 'g', 0, {str(tmp_path)!r}, 1, [sys.executable, '-c', "
        "'print(1)'])\n"
        "eng = engines.make_engine('local', 'sid', echo=lambda line: None)\n"
        "[r] = scheduler.schedule([run], eng, log=lambda line: None)\n"
        "print(r.state, 'ray' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["done", "False"]


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--engine=slurm"], "error: unknown engine 'slurm'; valid engines: local, ray"),
        (["--milestones=0.5,1.5"], "error: milestone 1.5 is outside (0, 1]"),
        (["--agent=a2c"], "error: unknown agent 'a2c'; valid agents: ppo, dqn"),
        (["--protocol=tiny"], "error: unknown protocol 'tiny'; valid protocols: smoke, "),
        (
            ["--gpus_per_run=0.5"],
            "error: --ray_address, --ray_num_cpus, --cpus_per_run and "
            "--gpus_per_run need --engine=ray",
        ),
        (["--engine=ray", "--gpus_per_run=1.5"], "error: --gpus_per_run=1.5 must be a fraction"),
    ],
)
def test_bad_flags_one_line(tmp_path, flags, message):
    proc = subprocess.run(
        [sys.executable, "-m", "launch.sweep", f"--root={tmp_path}/r", "--dry_run", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr
    assert not (tmp_path / "r").exists()


def test_other_agent_in_root_is_refused(tmp_path):
    _fake_run(tmp_path / "impala/starpilot/seed0", BUDGET, 12)
    (tmp_path / "impala/starpilot/seed0/config.json").write_text('{"agent": "ppo"}')
    with pytest.raises(ValueError, match="holds runs of another agent than 'dqn'"):
        sweep.sweep(
            get_protocol("cpu_small", agent="dqn"),
            str(tmp_path),
            dry_run=True,
            log=lambda line: None,
        )


def test_deterministic_refusal_is_not_retried(tmp_path):
    # A binary's refusal (bad input, NaN loss) fails the same way every time.
    refuse = "import sys; print('error: unknown game'); sys.exit(65)"
    run = plan.Run("impala", "starpilot", 0, str(tmp_path / "r"), 10, _script(refuse))
    lines = []
    eng = engines.LocalEngine("sid", max_retries=2, log=lines.append, echo=lambda line: None)
    _, result = eng.wait([eng.submit(run)])
    assert (result.state, result.attempts, result.deterministic) == ("failed", 1, True)
    assert result.note.startswith("exit 65: error: unknown game; log: ") and lines == []
    assert "| failed (not retried: deterministic) | 1 |" in scheduler.table([result], tmp_path)
    # The retry decision both engines use, and the Ray task's body: only failures worth
    # another attempt raise (Ray retries exceptions and dead workers only).
    assert [engines.retried(rc) for rc in (0, 2, 65, 75, 1, 3, -9, 143)] == [
        False,
        False,
        False,
        False,
        True,
        True,
        True,
        True,
    ]
    for rc, raises in ((65, False), (2, False), (0, False), (4, True), (143, True)):
        stub = lambda *a, rc=rc, **k: rc
        original, engines.execute = engines.execute, stub
        try:
            if raises:
                with pytest.raises(engines.RunFailed, match=f"exit {rc}"):
                    engines._ray_attempt(run, "sid", {}, False)
            else:
                assert engines._ray_attempt(run, "sid", {}, False) == rc
        finally:
            engines.execute = original


def test_locked_run_waits_for_the_holder_or_is_skipped(tmp_path):
    from test_run_lifecycle import hold_lock

    work = tmp_path / "w"
    # A stand-in binary that refuses a held workdir the way the real ones do.
    code = (
        "import sys; from rldarts.run import run_lifecycle\n"
        f"sys.exit(75 if run_lifecycle.holder({str(work)!r}) else 0)"
    )
    run = plan.Run("impala", "starpilot", 0, str(work), 10, _script(code))
    eng = engines.LocalEngine("sid", max_retries=0, log=print, echo=lambda line: None)
    eng.lock_wait_s, eng.lock_poll_s = 0.0, 0.05
    holder = hold_lock(work)
    try:
        _, result = eng.wait([eng.submit(run)])  # no time to wait: skipped, not failed
        assert (result.state, result.finished) == ("skipped", False)
        assert f"pid {holder.pid}" in result.note
        eng.lock_wait_s = 60.0
        threading.Timer(1.0, holder.kill).start()  # the old attempt dies after 1 s
        _, result = eng.wait([eng.submit(run)])
    finally:
        holder.kill()
        holder.wait()
    # Waited for the lock, then ran (the refused start is not a retry: max_retries=0).
    assert (result.state, result.attempts) == ("done", 3)
