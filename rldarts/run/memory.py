"""What a run's programs need in device memory, known before any of them runs.

XLA's buffer assignment of a compiled program (``compiled.memory_analysis()``) gives
its arguments, outputs and temporaries; their sum is the program's peak. ``plan``
compiles (without running) the acting program and the learner's programs of a built
setup (``AgentInterface.learner_programs``); ``benchmarks/memory_plan.py`` prints it.
At start-up ``rldarts.run.setup.build`` compares the learner step's peak with the
device's limit (``device_limit``): ``net.remat=auto`` takes the first level of
``rldarts.model.remat`` that fits, an explicit level that does not fit is refused in one
line, before anything is written. One device: a data-parallel learner divides the
batch (and its activations) by its number of devices, so the estimate is an upper bound
there.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from rldarts.common import host

GIB = 2**30
STEP_PROGRAMS = ("ppo_step", "dqn_step", "sac_step")  # the learner's biggest program per agent
LIMIT_VARIABLE = "RLDARTS_MEMORY_LIMIT_GIB"


def abstract_state(agent, alphas, env_spec):
    """``agent.init_state``'s result as shapes only (nothing allocated)."""
    obs = jax.ShapeDtypeStruct(
        (agent.num_envs, *env_spec.observation_shape), env_spec.observation_dtype
    )
    key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    return jax.eval_shape(agent.init_state, alphas, obs, key)


def programs(agent, alphas, env_spec, names=None) -> dict:
    """name -> (jitted program, abstract arguments of one call): ``act`` (a forward pass
    of every acting env) and the agent's ``learner_programs``; only ``names`` if given."""
    state = abstract_state(agent, alphas, env_spec)
    out = dict(agent.learner_programs(state))
    sds = jax.ShapeDtypeStruct
    obs = sds((agent.num_envs, *env_spec.observation_shape), env_spec.observation_dtype)
    key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    act = jax.jit(agent.policy, static_argnames="group")
    out["act"] = (act, (state.params, state.alphas, obs, key, sds((), jnp.float32)))
    return {k: v for k, v in out.items() if names is None or k in names}


def peak_bytes(program, args) -> dict:
    """Compiles ``program`` for ``args`` (shapes suffice) and reads XLA's memory plan."""
    m = program.lower(*args).compile().memory_analysis()
    parts = {
        "argument_bytes": int(m.argument_size_in_bytes),
        "output_bytes": int(m.output_size_in_bytes),
        "temp_bytes": int(m.temp_size_in_bytes),
        "alias_bytes": int(m.alias_size_in_bytes),
    }
    parts["peak_bytes"] = parts["argument_bytes"] + parts["output_bytes"] + parts["temp_bytes"]
    return parts


def plan(agent, alphas, env_spec, names=None) -> dict:
    """name -> ``peak_bytes`` parts, for the programs of ``programs``."""
    found = programs(agent, alphas, env_spec, names)
    return {name: peak_bytes(fn, args) for name, (fn, args) in found.items()}


def device_limit() -> tuple[int, str]:
    """(bytes a program may use, what that is): ``RLDARTS_MEMORY_LIMIT_GIB`` when set (to
    plan for a smaller device than this one), else the allocator's limit on GPU / TPU
    (``memory_stats()['bytes_limit']``), else (CPU backend) the available RAM."""
    given = os.environ.get(LIMIT_VARIABLE, "")
    if given:
        try:
            gib_limit = float(given)
        except ValueError:
            gib_limit = -1.0
        if not gib_limit > 0:
            raise ValueError(f"{LIMIT_VARIABLE}={given!r} is not a positive number of GiB")
        return int(gib_limit * GIB), f"{LIMIT_VARIABLE}"
    device = jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"the memory of {device.device_kind}"
    return host.available_ram_bytes(), "the available RAM"


def refusal(name: str, peak: int, limit: int, where: str, level: str, levels) -> str:
    """The one line a run stops on when its learner step does not fit."""
    tried = (
        f"net.remat={level}" if len(levels) == 1 else f"every net.remat level ({', '.join(levels)})"
    )
    # Remat does not shrink XLA:CPU's plan (issue 21), so it is no way out there.
    remat_way = "" if jax.default_backend() == "cpu" else "net.remat=edge (recompute activations), "
    return (
        f"the {name} needs about {gib(peak)} (XLA's plan, with {tried}) but {where} is "
        f"{gib(limit)}; ways out: {remat_way}parallel.learner_devices=N (split the "
        "minibatch over N devices), or a smaller minibatch (more ppo.num_minibatches / a "
        "smaller dqn.batch_size)"
    )


def gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"
