"""The persistent compilation cache (rldarts/run/compile_cache.py): wall time of a smoke
search with a cold cache, then of the same search in a fresh workdir with the cache the
first one filled (as a sweep's next run, a retry or a resume finds it).

Both runs are the binary a user types, as subprocesses, with ``RLDARTS_COMPILATION_CACHE``
pointing at a fresh temporary directory (the user's own cache is neither read nor
written). Prints JSON: the wall seconds of each run, warm / cold, and the hits, misses
and programs written that each run's end-of-run line reports.

    .venv/bin/python -m benchmarks.compile_cache [--preset smoke] [--binary search]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(
    r"compilation cache: (\d+) hits, (\d+) misses \((\d+) programs written\), "
    r"([\d.]+) s of compiling saved"
)


def timed_run(binary: str, preset: str, workdir: str, cache: str) -> dict:
    """One run of the binary; its wall seconds and the cache counts it printed."""
    env = dict(os.environ, RLDARTS_COMPILATION_CACHE=cache)
    env.pop("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", None)  # the binaries' default
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        sys.executable,
        "-m",
        f"experiments.{binary}",
        f"--config=experiments/configs/{binary}.py:{preset}",
        f"--workdir={workdir}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    m = LINE.search(proc.stdout)
    if m is None:
        sys.exit(f"error: no compilation cache line in the output of {' '.join(cmd)}")
    hits, misses, written, saved = m.groups()
    return {
        "wall_s": round(wall, 1),
        "hits": int(hits),
        "misses": int(misses),
        "written": int(written),
        "compile_s_saved": float(saved),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--binary", default="search", choices=["search", "train"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rldarts_compile_cache_") as tmp:
        cache = os.path.join(tmp, "cache")
        cold = timed_run(args.binary, args.preset, os.path.join(tmp, "cold"), cache)
        warm = timed_run(args.binary, args.preset, os.path.join(tmp, "warm"), cache)
        entries = len(os.listdir(cache))
    out = {
        "binary": args.binary,
        "preset": args.preset,
        "cold": cold,
        "warm": warm,
        "warm_over_cold": round(warm["wall_s"] / cold["wall_s"], 3),
        "cache_entries": entries,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
