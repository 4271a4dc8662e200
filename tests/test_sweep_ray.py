"""The Ray engine, milestones and the dependency scheduler.

End to end: the `smoke` protocol as one user command on a local Ray instance (2 CPUs),
its search killed after its first checkpoint by the test hook (binary and Ray worker
die, as on a lost node) and retried; meanwhile the local engine runs the same protocol's
search, IMPALA and first milestone, whose files must equal Ray's. Unit tests: milestone
extraction from a hand-written genotype_history.jsonl, scheduling with a fake engine,
and the Ray engine with stand-in binaries (GPU shares, retries, failures).
"""

import json
import os
import subprocess
import sys

import pytest
from _binaries import ROOT, load_sweep_module

from experiments.configs.protocol import get_protocol
from launch import engines, milestones, plan, scheduler
from rldarts.model.genotypes import CellGenotype, NetworkGenotype
from rldarts.run.logger import read_metrics

ray = pytest.importorskip("ray", reason="the Ray engine needs Ray (pip install ray)")
sweep = load_sweep_module()

SEARCH = os.path.join("search", "starpilot", "seed0")
COMPARED = (
    SEARCH,
    os.path.join("impala", "starpilot", "seed0"),
    os.path.join("milestone", "starpilot", "seed0", "m0.5"),
)


# ----------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """(ray root, local root, ray sweep's stdout). The Ray sweep runs as the user command;
    the local engine runs its share of the protocol in this process at the same time."""
    base = tmp_path_factory.mktemp("smoke")
    ray_root, local_root = base / "ray", base / "local"
    env = {**os.environ, engines.KILL_HOOK_ENV: SEARCH}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launch.sweep",
            "--protocol=smoke",
            f"--root={ray_root}",
            "--engine=ray",
            "--ray_num_cpus=2",
            "--max_retries=2",
            f"--report={ray_root / 'report'}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    runs = [
        r
        for r in plan.expand(get_protocol("smoke"), str(local_root))
        if os.path.relpath(r.workdir, local_root) in COMPARED
    ]
    local = scheduler.schedule(
        runs,
        engines.LocalEngine("local", echo=lambda line: None),
        log=lambda line: None,
        prepare=sweep._prepare,
    )
    assert [r.state for r in local] == ["done"] * 3, [(r.run.title, r.note) for r in local]
    # A hang guard, not a speed check: a loaded 2-core machine needs ~10 min here.
    out, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, out[-5000:]
    return ray_root, local_root, out


def test_smoke_protocol_on_ray_end_to_end(smoke):
    root, _, out = smoke
    table = out[out.index("| run | state |") :]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert len(rows) == 6 and all("| done |" in ln for ln in rows), table
    assert "6 done, 0 skipped, 0 failed" in table
    for workdir in (
        "search/starpilot/seed0",
        "retrain/starpilot/seed0",
        "impala/starpilot/seed0",
        "random/starpilot/seed0/random_000",
        "milestone/starpilot/seed0/m0.5",
        "milestone/starpilot/seed0/m1.0",
    ):
        assert f"| {workdir} |" in table
        assert plan.is_finished(str(root / workdir), 768), workdir
        log = (root / workdir / engines.LOG_FILE).read_text()
        assert log.rstrip().endswith("=== exit 0 ===") and "done: 768 env steps" in log
    # Milestone 1.0 is the search's final genotype; 0.5 the one written at 256 <= 384.
    final = (root / SEARCH / "genotype.json").read_text()
    m = lambda f: root / "milestone_genotypes/starpilot/seed0" / f
    assert (m("m1.0") / "genotype.json").read_text() == final
    history = [json.loads(ln) for ln in (root / SEARCH / "genotype_history.jsonl").open()]
    assert [h["env_steps"] for h in history] == [256, 512, 768]
    half = NetworkGenotype.from_json(json.dumps(history[0]["genotype"])).to_json()
    assert (m("m0.5") / "genotype.json").read_text() == half
    assert json.loads((m("m0.5") / "milestone.json").read_text())["env_steps"] == 256
    text = (root / "report" / "report.md").read_text()
    section = text.split("## 7. Cells along the search")[1]
    for row in (
        "| milestone @0.5 | 256 | 1 |",
        "| milestone @1 | 768 | 1 |",
        "| DARTS final retrain | end of search | 1 |",
        "| IMPALA | - | 1 |",
    ):
        assert row in section
    assert "DARTS final retrain vs IMPALA" in section
    assert (root / "report" / "milestones_starpilot_ppo.png").is_file()
    assert "Runs from: .. (6 workdirs" in text  # relative to the report


def test_killed_run_is_retried_and_resumes(smoke):
    root, _, out = smoke
    log = (root / SEARCH / engines.LOG_FILE).read_text().splitlines()
    heads = [i for i, ln in enumerate(log) if " attempt start " in ln]
    exits = [ln for ln in log if ln.startswith("=== exit")]
    assert len(heads) == 2 and exits == [
        "=== exit -9 (test hook: killed after its first checkpoint) ===",
        "=== exit 0 ===",
    ]
    second = log[heads[1] :]
    assert any(
        ln.startswith(f"resuming {root / SEARCH} from iteration 2 (512 env steps)") for ln in second
    ), second
    assert not any(ln.startswith("resuming") for ln in log[: heads[1]])
    assert [r["env_steps"] for r in read_metrics(root / SEARCH / "metrics.csv")] == [256, 512, 768]
    row = next(ln for ln in out.splitlines() if ln.startswith("| search starpilot seed 0 |"))
    assert row.split("|")[2:4] == [" done ", " 2 "]


def test_local_and_ray_engines_agree(smoke):
    ray_root, local_root, _ = smoke
    for rel in (
        "search/starpilot/seed0/genotype.json",
        "milestone_genotypes/starpilot/seed0/m0.5/genotype.json",
        "milestone_genotypes/starpilot/seed0/m0.5/milestone.json",
    ):
        a, b = (r / rel for r in (ray_root, local_root))
        if rel.endswith("milestone.json"):  # names its search's workdir: the roots differ
            a, b = (
                {k: v for k, v in json.loads(p.read_text()).items() if k != "search_workdir"}
                for p in (a, b)
            )
            assert a == b
        else:
            assert a.read_text() == b.read_text(), rel
    for rel in COMPARED:
        a, b = (read_metrics(r / rel / "metrics.csv") for r in (ray_root, local_root))
        assert len(a) == len(b) == 3
        for ra, rb in zip(a, b):
            assert set(ra) == set(rb)
            for key in set(ra) - {"wall_time_s", "sps"}:
                same = ra[key] == rb[key] or (ra[key] != ra[key] and rb[key] != rb[key])
                assert same, (rel, key, ra[key], rb[key])


# ---------------------------------------------------------------- milestone extraction


def _genotype(op):
    cell = CellGenotype(nodes=(((0, op),), ((0, "SkipConnection"), (1, "Conv3x3Relu"))))
    return NetworkGenotype({"normal": cell, "reduction": cell})


def _history(path, records, torn=False):
    with open(path, "w") as f:
        for steps, op in records:
            f.write(
                json.dumps({"env_steps": steps, "genotype": json.loads(_genotype(op).to_json())})
                + "\n"
            )
        if torn:
            f.write('{"env_steps": 999, "geno')


def test_milestone_selection_from_a_hand_written_history(tmp_path):
    path = tmp_path / "genotype_history.jsonl"
    _history(path, [(256, "Conv3x3Relu"), (512, "SkipConnection"), (768, "MaxPool3x3")], torn=True)
    records = milestones.read_history(str(path))
    assert [r["env_steps"] for r in records] == [256, 512, 768]  # torn last line dropped
    pick = lambda f, budget=768: milestones.select(records, f, budget)["env_steps"]
    # fraction x budget: 384 -> 256; 512 -> 512 (equal counts); 576 -> 512; 768 -> 768
    assert [pick(0.5), pick(2 / 3), pick(0.75), pick(1.0)] == [256, 512, 512, 768]
    assert pick(0.5, budget=2048) == 768  # a longer budget: the search stopped earlier
    with pytest.raises(
        ValueError,
        match="no genotype at or before 192 env steps .0.25 of "
        "768.; the first one was written at 256",
    ):
        pick(0.25)
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        pick(1.5)
    with open(path, "a") as f:
        f.write('\n{"env_steps": 1024, "genotype": {}}\n')  # a bad line inside is an error
    with pytest.raises(ValueError, match="line 4 is not a genotype record"):
        milestones.read_history(str(path))


def test_write_milestone_matches_genotype_json_format(tmp_path):
    search = tmp_path / "search"
    search.mkdir()
    # A resumed search truncates and rewrites its history: the same env_steps can only
    # appear once, so file order is step order; the last record <= target is taken.
    _history(
        search / "genotype_history.jsonl",
        [(256, "Conv3x3Relu"), (512, "SkipConnection"), (768, "Conv3x3Relu")],
    )
    [run] = [
        r
        for r in plan.expand(
            {**get_protocol("smoke"), "milestones": [0.75]}, str(tmp_path / "root")
        )
        if r.kind == "milestone"
    ]
    run.after = str(search)
    path = milestones.write_milestone(run)
    assert path == run.genotype and path.endswith("m0.75/genotype.json")
    assert open(path).read() == _genotype("SkipConnection").to_json()
    marker = json.loads(open(os.path.join(os.path.dirname(path), "milestone.json")).read())
    assert marker == {
        "fraction": 0.75,
        "env_steps": 512,
        "search_total_env_steps": 768,
        "search_workdir": str(search),
        "genotype": json.loads(_genotype("SkipConnection").to_json()),
    }
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]


# --------------------------------------------------------------------- the scheduler


class Recorder:
    """Fake engine: runs settle in the order `finish_order` names them (by kind+seed)
    whenever they are in flight; a search leaves a genotype unless told to fail."""

    def __init__(self, capacity=None, fail=()):
        self.capacity, self.fail, self.events, self.flight = capacity, fail, [], []

    def submit(self, run):
        self.events.append(("submit", run.kind, run.seed))
        self.flight.append(run)
        return run.workdir

    def wait(self, handles):
        assert self.capacity is None or len(handles) <= self.capacity
        # The slowest first among what is in flight: searches settle last.
        run = sorted(self.flight, key=lambda r: r.kind == "search")[0]
        self.flight.remove(run)
        self.events.append(("done", run.kind, run.seed))
        ok = (run.kind, run.seed) not in self.fail
        if ok and run.kind == "search":
            os.makedirs(run.workdir)
            with open(os.path.join(run.workdir, "genotype.json"), "w") as f:
                f.write(_genotype("Conv3x3Relu").to_json())
        return run.workdir, scheduler.Result(run, "done" if ok else "failed", 1.0, 1, finished=ok)

    def close(self):
        pass


def test_dependents_start_only_after_their_search(tmp_path):
    protocol = {**get_protocol("cpu_small"), "milestones": [0.5, 1.0]}
    prepared = []
    engine = Recorder(fail={("search", 1)})
    plan.write_random(protocol, str(tmp_path))  # what sweep() does before scheduling

    def prepare(run):  # stands in for milestones.write_milestone
        prepared.append((run.kind, run.seed))
        if run.kind == "milestone":
            os.makedirs(os.path.dirname(run.genotype))
            with open(run.genotype, "w") as f:
                f.write(_genotype("Conv3x3Relu").to_json())

    results = scheduler.schedule(
        plan.expand(protocol, str(tmp_path)), engine, log=lambda line: None, prepare=prepare
    )
    ev = engine.events
    # Everything independent is submitted at once (Ray queues by resources) ...
    first = ev[: ev.index(next(e for e in ev if e[0] == "done"))]
    assert sorted(first) == sorted(
        [("submit", "search", s) for s in (0, 1)]
        + [("submit", "impala", s) for s in (0, 1)]
        + [("submit", "random", s) for s in (0, 1)] * 2
    )
    # ... and a search's dependents only after it settled, none of a failed search.
    done0 = ev.index(("done", "search", 0))
    for kind in ("retrain", "milestone"):
        submits = [i for i, e in enumerate(ev) if e[:2] == ("submit", kind)]
        assert submits and min(submits) > done0
        assert ("submit", kind, 1) not in ev
    assert ev.count(("submit", "milestone", 0)) == 2
    assert [p for p in prepared if p[0] in ("retrain", "milestone")] == [
        (k, 0) for k in ("retrain", "milestone", "milestone")
    ]
    state = {(r.run.kind, r.run.seed, r.run.milestone): r.state for r in results}
    assert state[("search", 1, None)] == "failed"
    assert {state[("retrain", 1, None)], state[("milestone", 1, 0.5)]} == {"skipped"}
    assert [r.state for r in results].count("done") == 10  # of 14: 1 failed, 3 skipped


def test_capacity_one_keeps_plan_order_and_prepare_errors_fail_the_run(tmp_path):
    protocol = {**get_protocol("smoke"), "milestones": [0.5]}
    runs = plan.expand(protocol, str(tmp_path))
    plan.write_random(protocol, str(tmp_path))
    engine = Recorder(capacity=1)

    def prepare(run):
        if run.kind == "milestone":
            raise ValueError("no genotype at or before 384 env steps")

    results = scheduler.schedule(runs, engine, log=lambda line: None, prepare=prepare)
    assert [e[1] for e in engine.events if e[0] == "submit"] == [
        "search",
        "retrain",
        "impala",
        "random",
    ]
    assert results[-1].state == "failed" and results[-1].note.startswith("no genotype at")
    # Re-run: finished runs are skipped without being submitted; their dependents go.
    for r in runs[:1]:
        os.makedirs(os.path.join(r.workdir, "checkpoints", "3"))
        with open(os.path.join(r.workdir, "metrics.csv"), "w") as f:
            f.write("env_steps,iteration\n768,3\n")
    engine = Recorder(capacity=1)
    results = scheduler.schedule(runs[:2], engine, log=lambda line: None)
    assert [r.state for r in results] == ["skipped", "done"]
    assert results[0].note.startswith("finished earlier") and results[0].finished
    assert engine.events == [("submit", "retrain", 0), ("done", "retrain", 0)]


# ------------------------------------------------------- the Ray engine, stand-in runs


def test_gpu_env():
    assert engines.gpu_env(0.25) == {
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.25",
    }
    assert engines.gpu_env(0.0) == engines.gpu_env(1.0) == engines.gpu_env(2.0) == {}


def test_ray_engine_gpu_shares_parallel_runs_retries(tmp_path):
    """Two runs with half a (declared) GPU each run at the same time and see the XLA
    settings; a run failing once is retried; one failing always ends failed."""
    code = (
        "import json, os, sys, time; t = time.time(); time.sleep(3)\n"
        "keys = ('XLA_PYTHON_CLIENT_PREALLOCATE', 'XLA_PYTHON_CLIENT_MEM_FRACTION', "
        "'CUDA_VISIBLE_DEVICES')\n"
        "print(json.dumps({'env': [os.environ.get(k) for k in keys], 'cwd': os.getcwd(), "
        "'t': [t, time.time()]}))\n"
        "flag = sys.argv[1] + '.tried'\n"
        "fails = sys.argv[2] == 'always' or (sys.argv[2] == 'once' and "
        "not os.path.exists(flag))\n"
        "open(flag, 'w').close(); sys.exit(4 if fails else 0)"
    )
    runs = [
        plan.Run(
            "impala",
            "g",
            k,
            str(tmp_path / f"w{k}"),
            1,
            [sys.executable, "-c", code, str(tmp_path / f"w{k}"), mode],
        )
        for k, mode in enumerate(("never", "once", "always"))
    ]
    engine = engines.RayEngine(
        "sid", num_cpus=2, num_gpus=1, cpus_per_run=0.5, gpus_per_run=0.5, max_retries=1
    )
    try:
        results = scheduler.schedule(runs, engine, log=lambda line: None)
    finally:
        engine.close()
    assert [(r.state, r.attempts) for r in results] == [("done", 1), ("done", 2), ("failed", 2)]
    assert results[2].note == f"exit 4; log: {tmp_path / 'w2' / engines.LOG_FILE}"
    outputs = []
    for k in range(3):
        lines = (tmp_path / f"w{k}" / engines.LOG_FILE).read_text().splitlines()
        outputs.append([json.loads(ln) for ln in lines if ln.startswith("{")])
    assert [len(o) for o in outputs] == [1, 2, 2]
    for o in outputs:
        assert o[0]["env"][:2] == ["false", "0.5"] and o[0]["env"][2] == "0"
        assert o[0]["cwd"] == ROOT
    spans = [o[0]["t"] for o in outputs]  # first attempts: two ran at the same time
    assert any(
        max(a[0], b[0]) < min(a[1], b[1]) for i, a in enumerate(spans) for b in spans[i + 1 :]
    )
