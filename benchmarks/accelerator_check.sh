#!/usr/bin/env bash
# Accelerator check (issue 12): on a machine with a GPU or TPU and a base JAX install
# (JAX, Flax, optax, chex, numpy 2), install what rldarts still needs without touching
# the accelerator's JAX, print jax.devices(), then time-limited steps, each logging to
# OUT_DIR/<step>.log and writing JSON there:
#   install        missing runtime deps (+ pip install --no-deps -e .) -> install.log
#   devices        jax.devices(), versions, one EnvPool Procgen env    -> devices.json
#   memory_plan    benchmarks.memory_plan, paper preset: XLA's peak of the PPO step at
#                  minibatch 2048 (whole-minibatch batch norm) without remat and with
#                  net.remat=edge, and the step's time at each     -> memory_plan.json
#   export_check   benchmarks.export_check, paper preset, tpu and cuda  -> export_check.json
#                  (both first: the first lent accelerator reports them even if a later
#                  step fails)
#   smoke_search   experiments.search smoke preset, ppo.update_loop=scan -> smoke_search.json
#   ppo_impala_sync, ppo_impala_async, ppo_paper_sync, ppo_paper_async
#                  benchmarks.ppo_throughput, Procgen defaults (64 envs x 256 steps,
#                  8 minibatches, 3 epochs), 1 device and all devices, full loop
#                                                                       -> ppo_*.json
#   dqn            benchmarks.dqn_throughput learner step, 1 and all devices -> dqn.json
#   summary        the figures against the goals                        -> summary.json
# A failed or timed-out step does not stop the others; the exit code is 1 if any failed.
#
# Usage:   bash benchmarks/accelerator_check.sh [OUT_DIR]
#          (default OUT_DIR: $OUT, else benchmarks/results/accelerator_check)
# Environment:
#   PY=python3          the interpreter with the accelerator's JAX (default: python3,
#                       else python)
#   WHEELS=dir          wheels carried beside the tree (e.g. envpool, rlax, ...): tried
#                       first with --no-index, then the package index
#   STEPS="a b ..."     run these steps in this order (names above; summary always
#                       runs); default: all, in the order above
#   BUDGET_S=540        total seconds: each step's timeout is cut to what is left, and
#                       steps that would get < 30 s are skipped (recorded as skipped)
#   ITERATIONS=3        timed full-loop iterations per PPO case
#   CHECK_TINY=1        dry run: smoke-size networks, 8 envs x 32 steps, few repeats
#                       (minutes on 2 CPU cores); its figures are not figures
#   T_INSTALL, T_DEVICES, T_MEMORY, T_EXPORT, T_SMOKE, T_PPO, T_DQN
#                       per-step timeouts in seconds
#   EDITABLE=0          skip `pip install --no-deps -e .` (the steps run from the tree)
#   PACK=1              write OUT_DIR/summary.json + OUT_DIR/accelerator_check.tar.gz only
#                       (automatic when OUT_DIR is $OUT: the device tool returns 8 files)
#
# Wheels for a machine without the index: where pip works, run
#   python -m benchmarks.accelerator_check pack-wheels .whl 3.12
# (53 MiB: envpool, its Procgen assets and the Qt5 Core/Gui libraries slimmed; rlax and
# its needs, ml-collections, tensorboardX, ...), carry .whl and run with WHEELS=.whl.
# EnvPool's Procgen needs the system's libGL.so.1 (Qt5 Gui links it).
#
# On this workplace's device tool (one GPU, 10 minutes a command), e.g.:
#   WHEELS=.whl BUDGET_S=560 bash benchmarks/accelerator_check.sh   (carry: .whl)
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PY:-}" ]; then
  PY=python3
  command -v python3 >/dev/null 2>&1 || PY=python
fi
PY="$(command -v "$PY")" || { echo "error: no python interpreter ${PY}"; exit 2; }
# An absolute path (not resolved through symlinks: a venv's python must stay itself).
case "$PY" in /*) ;; *) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
OUT_DIR="${1:-${OUT:-$ROOT/benchmarks/results/accelerator_check}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
# The device machine returns at most 8 files from $OUT: when OUT_DIR is $OUT (or PACK=1)
# the steps write to a scratch folder and OUT_DIR receives summary.json and
# accelerator_check.tar.gz (everything), refreshed after every step.
PACK_DIR=""
if [ -n "${PACK:-}" ]; then
  PACK_DIR="$OUT_DIR"
elif [ -n "${OUT:-}" ] && [ -d "$OUT" ] && [ "$OUT_DIR" = "$(cd "$OUT" && pwd)" ]; then
  PACK_DIR="$OUT_DIR"
fi
if [ -n "$PACK_DIR" ]; then
  OUT_DIR="${TMPDIR:-/tmp}/accelerator_check"
  rm -rf "$OUT_DIR"
  mkdir -p "$OUT_DIR"
fi
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# Compiled programs shared by the steps (the sync and async runs compile the same
# update); outside OUT_DIR, which should hold only results.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-${TMPDIR:-/tmp}/rldarts_jax_cache}"
TINY="${CHECK_TINY:-0}"
[ "$TINY" = "0" ] && TINY=""
ITERATIONS="${ITERATIONS:-3}"
T_INSTALL="${T_INSTALL:-600}"
T_DEVICES="${T_DEVICES:-120}"
T_SMOKE="${T_SMOKE:-600}"
T_PPO="${T_PPO:-900}"
T_DQN="${T_DQN:-600}"
T_MEMORY="${T_MEMORY:-600}"
T_EXPORT="${T_EXPORT:-300}"
START=$(date +%s)
STEPS_FILE="$OUT_DIR/steps.jsonl"
: > "$STEPS_FILE"
FAILED=0

log() { echo "[accelerator_check $(date +%H:%M:%S)] $*"; }

record() {  # record STEP STATUS RC WALL_S TIMEOUT_S
  printf '{"step": "%s", "status": "%s", "rc": %s, "wall_s": %s, "timeout_s": %s}\n' \
    "$1" "$2" "$3" "$4" "$5" >> "$STEPS_FILE"
}

# run_step NAME TIMEOUT_S CMD...: time-limited, output to OUT_DIR/NAME.log.
run_step() {
  local name="$1" limit="$2"
  shift 2
  if [ -n "${BUDGET_S:-}" ]; then
    local left=$(( BUDGET_S - ($(date +%s) - START) ))
    if [ "$left" -lt 30 ]; then
      log "$name: skipped (${left}s of BUDGET_S left)"
      record "$name" skipped null 0 "$limit"
      return 0
    fi
    [ "$left" -lt "$limit" ] && limit="$left"
  fi
  log "$name: start (timeout ${limit}s, log $OUT_DIR/$name.log)"
  local t0 rc status
  t0=$(date +%s.%N)
  # bash -c: a step may be one of the functions below (exported).
  timeout --kill-after=15 "$limit" bash -c '"$@"' _ "$@" > "$OUT_DIR/$name.log" 2>&1
  rc=$?
  local wall
  wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  if [ "$rc" -eq 0 ]; then status=ok
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status=timeout; FAILED=1
  else status=failed; FAILED=1
  fi
  log "$name: $status (rc $rc, ${wall}s)"
  [ "$status" != ok ] && tail -n 5 "$OUT_DIR/$name.log" | sed 's/^/    /'
  record "$name" "$status" "$rc" "$wall" "$limit"
  # A summary after every step: a check cut short still leaves one.
  "$PY" -m benchmarks.accelerator_check summarize "$OUT_DIR" > /dev/null 2>&1 || true
  publish
  return 0
}

publish() {  # OUT_DIR -> PACK_DIR (summary.json + one archive) when packing
  [ -z "$PACK_DIR" ] && return 0
  cp "$OUT_DIR/summary.json" "$PACK_DIR/" 2>/dev/null
  tar czf "$PACK_DIR/accelerator_check.tar.gz" -C "$(dirname "$OUT_DIR")" \
    "$(basename "$OUT_DIR")" 2>/dev/null
}

# ---------------------------------------------------------------- install
install_deps() {
  local pins="$OUT_DIR/pins.txt" need req
  "$PY" -m benchmarks.accelerator_check pins "$pins" || return 1
  need="$("$PY" -m benchmarks.accelerator_check missing)" || return 1
  echo "missing: ${need:-nothing}"
  if [ -n "$need" ] && [ -n "${WHEELS:-}" ]; then
    # The carried wheels (benchmarks.accelerator_check pack-wheels), without resolving:
    # nothing there can replace the accelerator stack (the pins refuse it anyway).
    echo "== wheels from $WHEELS"
    "$PY" -m pip install --no-index --no-deps -c "$pins" "$WHEELS"/*.whl \
      || echo "note: installing the carried wheels failed"
    need="$("$PY" -m benchmarks.accelerator_check missing)"
  fi
  for req in $need; do  # what is still missing: the package index, jax & co pinned
    echo "== $req from the package index"
    "$PY" -m pip install -c "$pins" ${WHEELS:+--find-links "$WHEELS"} "$req" \
      || echo "error: could not install $req"
  done
  # The package itself, without dependencies; the steps also find it on PYTHONPATH.
  if [ "${EDITABLE:-1}" = 0 ]; then
    echo "EDITABLE=0: no pip install -e . (running from PYTHONPATH=$ROOT)"
  elif (cd / && "$PY" -c "import rldarts, sys; sys.exit(not rldarts.__file__.startswith('$ROOT'))") \
      2>/dev/null; then
    echo "rldarts already installed from $ROOT"
  else
    # Without build isolation first: offline, pip cannot fetch setuptools.
    "$PY" -m pip install --no-deps --no-build-isolation -e . \
      || "$PY" -m pip install --no-deps -e . \
      || echo "note: pip install -e . failed; running from PYTHONPATH=$ROOT"
  fi
  "$PY" -m benchmarks.accelerator_check verify-pins "$pins" || return 1
  "$PY" -m benchmarks.accelerator_check verify-imports
}

# ---------------------------------------------------------------- settings
if [ -n "$TINY" ]; then
  log "CHECK_TINY: a dry run with smoke-size networks and tiny batches (not figures)"
  PPO_SIZE=(--net-size smoke --num-envs 8 --num-steps 32 --num-minibatches 2 --epochs 1
            --act-repeats 2 --step-repeats 1 --update-repeats 1)
  ENV_STEPS=20
  DQN_SIZE=(--net-size smoke --num-envs 8 --batch-size 32 --capacity 4096
            --act-steps 5 --learner-steps 2)
  ITERATIONS="${CHECK_TINY_ITERATIONS:-1}"
else
  # Procgen defaults (ppo_throughput's own: 64 envs x 256 steps, 8 minibatches, 3 epochs).
  PPO_SIZE=(--act-repeats 20 --step-repeats 5 --update-repeats 2)
  ENV_STEPS=300
  DQN_SIZE=(--act-steps 50 --learner-steps 20)
fi

ppo_case() {  # ppo_case NETWORK sync|async
  local extra=()
  [ "$2" = async ] && extra=(--async-actor)
  local env_steps=0
  [ "$1" = impala ] && [ "$2" = sync ] && env_steps="$ENV_STEPS"
  run_step "ppo_$1_$2" "$T_PPO" "$PY" -m benchmarks.ppo_throughput --networks "$1" \
    --full-loop-networks all --update-networks all --devices 1,all \
    --iterations "$ITERATIONS" --env-steps "$env_steps" "${PPO_SIZE[@]}" "${extra[@]}" \
    --out "$OUT_DIR/ppo_$1_$2.json"
}

smoke_search() {
  local work="$OUT_DIR/smoke_search_workdir" t0 rc wall
  rm -rf "$work"
  t0=$(date +%s.%N)
  "$PY" -m experiments.search --config=experiments/configs/search.py:smoke \
    --workdir="$work" --config.ppo.update_loop=scan
  rc=$?
  wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  "$PY" -m benchmarks.accelerator_check smoke-result "$work" "$wall" "$rc" \
    "$OUT_DIR/smoke_search.json"
  local status=$?
  # Keep the metrics, genotype and config; drop checkpoints, events and drawings.
  find "$work" -mindepth 1 -maxdepth 1 ! -name metrics.csv ! -name genotype.json \
    ! -name config.json -exec rm -rf {} +
  return $status
}

# ---------------------------------------------------------------- steps
export ROOT OUT_DIR PY
export WHEELS="${WHEELS:-}"
export -f install_deps smoke_search

step() {
  case "$1" in
    install) run_step install "$T_INSTALL" install_deps ;;
    devices)
      run_step devices "$T_DEVICES" "$PY" -m benchmarks.accelerator_check devices \
        "$OUT_DIR/devices.json"
      grep "jax.devices()" "$OUT_DIR/devices.log" 2>/dev/null || true ;;
    memory_plan)
      local mem_preset=paper mem_time=3
      [ -n "$TINY" ] && mem_preset=smoke && mem_time=1
      run_step memory_plan "$T_MEMORY" bash -c '"$@" > "$OUT_DIR/memory_plan.json"' _ \
        "$PY" -m benchmarks.memory_plan --preset="$mem_preset" --agents=ppo \
        --programs=act,ppo_step --remat=none,edge --time="$mem_time" ;;
    export_check)
      local exp_preset=paper
      [ -n "$TINY" ] && exp_preset=smoke
      run_step export_check "$T_EXPORT" bash -c '"$@" > "$OUT_DIR/export_check.json"' _ \
        "$PY" -m benchmarks.export_check --preset="$exp_preset" --platforms=tpu,cuda ;;
    smoke_search) run_step smoke_search "$T_SMOKE" smoke_search ;;
    ppo_impala_sync) ppo_case impala sync ;;
    ppo_impala_async) ppo_case impala async ;;
    ppo_paper_sync) ppo_case paper sync ;;
    ppo_paper_async) ppo_case paper async ;;
    dqn)
      run_step dqn "$T_DQN" "$PY" -m benchmarks.dqn_throughput --networks impala,paper \
        --devices 1,all "${DQN_SIZE[@]}" --out "$OUT_DIR/dqn.json" ;;
    *) log "unknown step $1"; record "$1" failed null 0 0; FAILED=1 ;;
  esac
}

log "root $ROOT, out ${PACK_DIR:-$OUT_DIR}, python $PY"
for name in ${STEPS:-install devices memory_plan export_check smoke_search \
                      ppo_impala_sync ppo_impala_async ppo_paper_sync ppo_paper_async dqn}; do
  step "$name"
done

"$PY" -m benchmarks.accelerator_check summarize "$OUT_DIR" || FAILED=1
publish
log "summary: ${PACK_DIR:-$OUT_DIR}/summary.json"
exit "$FAILED"
