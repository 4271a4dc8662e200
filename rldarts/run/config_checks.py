"""Validation of experiment configs and the fingerprint that guards resuming.

Every bad value is reported as one ValueError line that names the key, the value and
the valid choices, before anything is written to the workdir.
"""

from __future__ import annotations

import copy

import jax

from rldarts.env import envs, families
from rldarts.learn import agents, arch, parallel, ppo, ppo_loops
from rldarts.model import genotypes, methods, networks, remat
from rldarts.model import ops as ops_lib
from rldarts.model.genotypes import NetworkGenotype, Provenance

# Keys that may change between a run and its resumption.
# ppo.microbatch_size and ppo.update_loop are compute only (same update; absent from
# checkpoints made before they existed), except that ppo.microbatch_size sets the
# batch-norm sample count of networks with batch statistics (see ``fingerprint``).
# total_env_steps may change: the LR anneal (ppo.anneal_lr) and the inverse-temperature
# schedule then follow the new horizon from the resumed iteration on.
# The devices a run uses are compute only too (the same update up to summation order),
# except parallel.async_actor (acting one update behind) and parallel.num_processes
# (each process's envs, their host state and replay files in the checkpoint; the
# fingerprint holds the run's actual count, see ``process_count``).
RESUMABLE_KEYS = (
    "total_env_steps",
    "eval",
    "num_threads",
    "ppo.microbatch_size",
    "ppo.update_loop",
    "ppo.rollout_loop",
    "net.remat",  # the same update to float tolerance (rldarts.model.remat)
    "parallel.learner_devices",
    "parallel.actor_devices",
    "parallel.coordinator_address",
    "parallel.process_id",
)


def _choice(key, value, choices):
    if value not in choices:
        raise ValueError(
            f"config {key}={value!r} is not valid; valid choices: {', '.join(map(str, choices))}"
        )


def _positive(c, *keys):
    for key in keys:
        value = c
        for part in key.split("."):
            value = value[part]
        if isinstance(value, bool) or not value > 0:
            raise ValueError(f"config {key}={value!r} must be positive")


def num_envs(c) -> int:
    """The acting envs of the configured agent."""
    return c[c.agent].num_envs


# Config key -> the field of a genotype's provenance (genotypes.Provenance) recording it.
GENOTYPE_KEYS = {
    "network": "network",
    "net.search_space": "search_space",
    "net.num_nodes": "num_nodes",
    "net.output_mode": "output_mode",
    "net.first_conv": "first_conv",
    "net.depths": "depths",
    "net.dense": "dense",
}
# The keys that describe the cells themselves: a value set in the config must equal the
# genotype file's. The others (widths, stem) shape the network around the cells: a value
# set there wins (DARTS evaluates its cells in a wider network than it searched with).
GENOTYPE_CELL_KEYS = ("network", "net.search_space", "net.num_nodes", "net.output_mode")
# The section where train configs keep the values of their unset network keys for runs
# without a genotype file that records them (IMPALA-CNN at the preset's widths).
WITHOUT_GENOTYPE = "without_genotype"


def _get(c, key):
    for part in key.split("."):
        c = c[part]
    return c


def genotype_provenance(c, method: str | None = None) -> Provenance:
    """What a genotype found with config ``c`` records about how it was found."""
    method = method or c.arch.get("method", methods.DEFAULT)
    return Provenance(
        method=method, **{field: _get(c, key) for key, field in GENOTYPE_KEYS.items()}
    )


def resolve_genotype_config(c):
    """A copy of ``c`` with its network keys (GENOTYPE_KEYS) settled; ``c`` is unchanged.

    A key is unset when it holds None or '' (the train configs leave them unset). With
    ``genotype`` naming a file that records how it was found (format 2), unset keys take
    the file's values, and a set key that describes the cells (GENOTYPE_CELL_KEYS) must
    equal the file's: else one ValueError line names both. Otherwise unset keys take the
    config's ``without_genotype`` values, and a genotype needs a set DARTS network.
    Call before ``validate`` and ``fingerprint``.
    """
    genotype = NetworkGenotype.load(c.genotype) if c.genotype else None
    found = genotype.found_with if genotype is not None else None
    fallback = c.get(WITHOUT_GENOTYPE)
    out = copy.deepcopy(c)
    for key, field in GENOTYPE_KEYS.items():
        value = _get(c, key)
        unset = value is None or value == ""
        *parents, leaf = key.split(".")
        section = out
        for name in parents:
            section = section[name]
        if found is not None:
            recorded = getattr(found, field)
            if unset:
                section[leaf] = recorded
            elif key in GENOTYPE_CELL_KEYS and value != recorded:
                raise ValueError(
                    f"config {key}={value!r} contradicts genotype {c.genotype} "
                    f"(found with {key}={recorded!r}); drop --config.{key} or "
                    "use a matching genotype"
                )
        elif unset:
            if genotype is not None and key == "network":
                raise ValueError(
                    f"config genotype={c.genotype!r} needs a DARTS network (the "
                    "file does not record the one it was found with); set "
                    f"network to one of {', '.join(networks.CELL_TYPES)}"
                )
            if fallback is None:
                raise ValueError(
                    f"config {key} is unset; set it, or give a genotype file that records it"
                )
            section[leaf] = _get(fallback, key)
    if fallback is not None:
        with out.unlocked():
            del out[WITHOUT_GENOTYPE]
    return out


def validate(c) -> None:
    """Every check of a config's values, each raising one line that names the key and
    the valid choices; the parallel layout is checked later (``check_parallel``)."""
    _check_choices(c)
    _check_action_kind(c)
    _check_ranges(c)
    _check_dqn(c)
    if c.agent == "sac":
        _check_sac(c)
    _check_pairs(c)


def _check_choices(c) -> None:
    if str(c.env_name).startswith((families.MINATAR_PREFIX, families.dmc.PREFIX)):
        try:  # names the valid games / tasks of that family only
            families.family(c.env_name)
        except ValueError as e:
            raise ValueError(f"config env_name: {e}") from None
    _choice("env_name", c.env_name, families.ENV_NAMES)
    _choice("distribution_mode", c.distribution_mode, envs.DISTRIBUTION_MODES)
    _choice("agent", c.agent, tuple(agents.AGENTS))
    _choice("network", c.network, tuple(n for n in networks.NETWORKS if n != "mlp"))
    _choice("arch.mode", c.arch.mode, arch.MODES)
    _choice("net.remat", c.net.get("remat", "auto"), ("auto", *remat.LEVELS))
    _choice("arch.method", c.arch.method, tuple(methods.METHODS))
    ppo.update_loop(c.ppo.update_loop)  # raises on an unknown choice
    # An unknown choice, or a scan over envs that cannot step on the device (the actor
    # checks its devices once it exists).
    ppo_loops.rollout_loop(c.ppo.rollout_loop, families.family(c.env_name).steps_on_device)
    _choice("arch.optimizer", c.arch.optimizer, arch.OPTIMIZERS)
    _choice("arch.heldout_source", c.arch.heldout_source, arch.HELDOUT_SOURCES)
    _choice("net.output_mode", c.net.output_mode, genotypes.OUTPUT_MODES)
    try:
        ops_lib.resolve_search_space(c.net.search_space)
    except ValueError as e:
        raise ValueError(f"config net.search_space: {e}") from None


def _check_action_kind(c) -> None:
    """A continuous-action agent (SAC) on a discrete-action env, or the reverse."""
    continuous = families.spec(c.env_name).continuous
    if getattr(agents.AGENTS[c.agent], "continuous_actions", False) != continuous:
        kind, fits = ("continuous", "sac") if continuous else ("discrete", "ppo or dqn")
        raise ValueError(
            f"config agent={c.agent!r} does not fit env_name={c.env_name!r}, whose actions "
            f"are {kind}; use agent {fits}"
        )


def _check_ranges(c) -> None:
    if c.num_levels < 0 or c.start_level < 0 or c.num_threads < 0:
        raise ValueError("config num_levels, start_level and num_threads must be >= 0")
    if not c.net.depths or any(d <= 0 for d in c.net.depths):
        raise ValueError(f"config net.depths={tuple(c.net.depths)} must be positive ints")
    _positive(
        c,
        "total_env_steps",
        "net.dense",
        "net.num_nodes",
        "arch.discretize_k",
        "ppo.num_envs",
        "ppo.num_steps",
        "ppo.num_minibatches",
        "ppo.update_epochs",
        "ppo.learning_rate",
        "ppo.adam_eps",
        "ppo.max_grad_norm",
        "eval.every_iterations",
        "eval.num_episodes",
        "eval.num_envs",
        "log.checkpoint_every_iterations",
        "log.genotype_every_iterations",
        "arch.gumbel_tau",
        "arch.final_gumbel_tau",
        "arch.partial_channels_k",
    )
    if c.arch.unrolled_lr < 0:
        raise ValueError(
            f"config arch.unrolled_lr={c.arch.unrolled_lr} must be >= 0 "
            "(0 = the weights' learning rate)"
        )
    if not 0 < c.ppo.gamma <= 1 or not 0 <= c.ppo.gae_lambda <= 1:
        raise ValueError(
            f"config ppo.gamma={c.ppo.gamma} and ppo.gae_lambda="
            f"{c.ppo.gae_lambda} must lie in (0, 1] and [0, 1]"
        )


def _check_sac(c) -> None:
    _positive(
        c,
        "sac.num_envs",
        "sac.iteration_env_steps",
        "sac.replay_capacity",
        "sac.batch_size",
        "sac.samples_per_insert",
        "sac.n_step",
        "sac.learning_rate",
        "sac.actor_learning_rate",
        "sac.temperature_learning_rate",
        "sac.init_temperature",
        "sac.tau",
        "sac.target_update_period",
        "sac.actor_update_period",
        "sac.hidden",
    )
    if c.get("parallel") and c.parallel.async_actor:
        raise ValueError(
            "config parallel.async_actor=True is not supported with agent 'sac' (its "
            "random seed steps depend on the replay the learner is filling); set it False"
        )
    if c.sac.replay_capacity // c.sac.num_envs <= c.sac.n_step + 1:
        raise ValueError(
            f"config sac.replay_capacity={c.sac.replay_capacity} is too small "
            f"for {c.sac.num_envs} envs and n_step {c.sac.n_step}"
        )


def _check_dqn(c) -> None:
    _positive(
        c,
        "dqn.num_envs",
        "dqn.iteration_env_steps",
        "dqn.replay_capacity",
        "dqn.batch_size",
        "dqn.samples_per_insert",
        "dqn.n_step",
        "dqn.learning_rate",
        "dqn.target_update_period",
        "dqn.num_atoms",
        "dqn.hidden",
    )
    if (
        c.agent == "dqn"
        and not c.dqn.reward_max_return
        and not families.family(c.env_name).has_levels
    ):
        raise ValueError(
            f"config dqn.reward_max_return=0 means the Procgen game's R_max, which "
            f"{c.env_name!r} has not; set dqn.reward_max_return (1.0: rewards as they are)"
        )
    if c.dqn.v_max <= c.dqn.v_min:
        raise ValueError(f"config dqn.v_max={c.dqn.v_max} must exceed dqn.v_min={c.dqn.v_min}")
    if c.dqn.replay_capacity // c.dqn.num_envs <= c.dqn.n_step + 1:
        raise ValueError(
            f"config dqn.replay_capacity={c.dqn.replay_capacity} is too small "
            f"for {c.dqn.num_envs} envs and n_step {c.dqn.n_step}"
        )


def _check_pairs(c) -> None:
    """Settings that are only wrong together."""
    if c.genotype and c.network not in networks.CELL_TYPES:
        raise ValueError(
            f"config genotype={c.genotype!r} needs a DARTS network; set "
            f"network to one of {', '.join(networks.CELL_TYPES)}"
        )
    arch.heldout_envs(c.arch, num_envs(c))  # raises on an empty split
    if (
        c.arch.mode in arch.HELDOUT_MODES
        and c.arch.heldout_source == "unseen_levels"
        and not families.family(c.env_name).has_levels
    ):
        raise ValueError(
            f"config arch.heldout_source='unseen_levels' needs levels; {c.env_name!r} has "
            "none (its held-out envs differ only by seed): use "
            "arch.heldout_source='rollout_split'"
        )
    if (
        c.arch.mode in arch.HELDOUT_MODES
        and c.arch.heldout_source == "unseen_levels"
        and c.num_levels == 0
    ):
        raise ValueError(
            "config arch.heldout_source='unseen_levels' needs num_levels > 0: "
            "with num_levels=0 the training envs already play every level, "
            "so nothing is unseen; set num_levels or use "
            "arch.heldout_source='rollout_split'"
        )


def check_parallel(c, num_heldout: int) -> None:
    """Devices and batch sizes that do not fit together -> one ValueError line."""
    p = c.parallel
    if (
        p.coordinator_address
        and p.coordinator_address != "auto"
        and not (p.num_processes >= 1 and 0 <= p.process_id < p.num_processes)
    ):
        raise ValueError(
            f"config parallel.process_id={p.process_id} must lie in "
            f"0..{p.num_processes - 1} (parallel.num_processes="
            f"{p.num_processes})"
        )
    envs_ = num_envs(c)
    minibatches = []
    if c.agent == "ppo":  # refuses a ppo.num_minibatches that does not divide
        minibatches = list(ppo.minibatch_sizes(c.ppo, envs_ - num_heldout, num_heldout))
    parallel.check(
        p,
        num_envs=envs_,
        num_heldout=num_heldout,
        minibatches=minibatches,
        batch_sizes=[c[c.agent].batch_size] if c.agent in ("dqn", "sac") else [],
        process_count=jax.process_count(),
        rollout_sharded=c.agent == "ppo",
    )


def fingerprint(c) -> dict:
    """What must match for a workdir's checkpoint to be resumed with this config."""
    d = c.to_dict()
    keys = RESUMABLE_KEYS
    if networks.uses_batch_statistics(c.network):
        keys = tuple(k for k in keys if k != "ppo.microbatch_size")  # a hyperparameter
    for key in keys:
        *parents, leaf = key.split(".")
        section = d
        for name in parents:
            section = section.get(name, {})
        section.pop(leaf, None)
    if "parallel" in d:
        # Each process resumes its own envs' host state and replay files, so the
        # process count must match; recorded as the run has it, not as configured.
        d["parallel"]["num_processes"] = process_count(c)
    return d


def process_count(c) -> int:
    """The run's number of processes: 1 without a coordinator (``num_processes`` is
    then unused), ``jax.process_count()`` once ``jax.distributed`` is up (so also for
    ``coordinator_address=auto``, whose count the platform decides), else as configured."""
    address = c.parallel.coordinator_address
    if not address:
        return 1
    if jax.distributed.is_initialized():
        return jax.process_count()
    return c.parallel.num_processes
