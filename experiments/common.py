"""The command-line shell around rldarts.run.experiment.run shared by search and train.

Mistakes on the command line (an unknown preset or config file, a misspelt
``--config.KEY``, a value of the wrong type) end in one line ``error: ...`` that names the
problem and the valid choices, before anything is written.
"""

from __future__ import annotations

import difflib
import glob
import importlib.util
import os
import re
import sys

from absl import app, flags
from ml_collections import config_dict, config_flags

from rldarts.run import errors, run_lifecycle
from rldarts.run.logger import quiet_library_logs

quiet_library_logs()  # before jax picks its backends (first use, in main)

CONFIG = config_flags.DEFINE_config_file("config", None, "experiments/configs/*.py:PRESET")
WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (resumed if it has a checkpoint).")


def _config_spec(argv: list[str]) -> str | None:
    """The value of --config in argv (``--config=X`` or ``--config X``), else None."""
    for i, arg in enumerate(argv):
        if re.fullmatch(r"--?config=.*", arg):
            return arg.split("=", 1)[1]
        if re.fullmatch(r"--?config", arg) and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _override_keys(argv: list[str]) -> list[str]:
    """The dotted keys of every --config.KEY[=VALUE] (and --noconfig.KEY) in argv."""
    keys = []
    for arg in argv:
        m = re.match(r"--?(?:no)?config\.([^=]+)", arg)
        if m:
            keys.append(m.group(1))
    return keys


def _load_config(path: str, preset: str):
    module_spec = importlib.util.spec_from_file_location("_rldarts_cli_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(preset) if preset else module.get_config()


def _describe_key_error(config, key: str) -> str | None:
    """One line naming the first part of a dotted key that the config does not have, with
    the closest existing key and the valid keys of that section; None if the key exists."""
    node, walked = config, []
    for part in key.split("."):
        name = part.split("[", 1)[0]  # a.b[0]: the field name, not the index
        where = ".".join(walked)
        if not isinstance(node, config_dict.ConfigDict):
            return (
                f"config key {where!r} holds a value ({type(node).__name__}), not a "
                f"section: --config.{key} does not exist"
            )
        if name not in node:
            valid = sorted(node.keys())
            full = ".".join(walked + [name])
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" did you mean {'.'.join(walked + close)!r}?" if close else ""
            section = f"of {where}" if where else "at the top level"
            return (
                f"unknown config key {full!r} (--config.{key});{hint} "
                f"valid keys {section}: {', '.join(valid)}"
            )
        node = node[name]
        walked.append(name)
    return None


def _missing_config_file(argv: list[str]) -> str | None:
    """One line if --config names a file that does not exist (ml_collections would only
    fail at the first use of the config, inside main)."""
    spec = _config_spec(argv)
    path = (spec or "").partition(":")[0]
    if spec is None or os.path.isfile(path):
        return None
    here = os.path.dirname(path) or "."
    files = sorted(
        p
        for p in glob.glob(os.path.join(here, "*.py"))
        if "def get_config" in open(p, encoding="utf-8").read()
    )
    valid = (
        f"config files in {here}: {', '.join(files)}"
        if files
        else "run from the repository root, e.g. --config=experiments/configs/search.py:smoke"
    )
    return f"config file {path!r} not found (--config={spec}); {valid}"


def _diagnose(argv: list[str]) -> str | None:
    """Why parsing argv failed, in one line, when it is a mistake we recognise."""
    spec = _config_spec(argv)
    if spec is None:
        return None
    path, _, preset = spec.partition(":")
    try:
        config = _load_config(path, preset)
    except ValueError as e:  # base.build: unknown preset, with the valid ones
        return f"{e} (--config={spec})"
    for key in _override_keys(argv):
        message = _describe_key_error(config, key)
        if message:
            return message
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing with one-line errors (absl prints a traceback or two lines)."""
    try:
        message = _missing_config_file(argv)
        if message is None:
            return flags.FLAGS(argv)
    except (flags.Error, KeyError, AttributeError, IndexError) as e:
        message = _diagnose(argv)
        if message is None:
            text = str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip()
            if not text or "\n" in text:
                raise  # not a mistake we recognise (a bug in a config file?): keep it all
            message = text  # a value that does not parse, an unknown flag, ...
    sys.stderr.write(f"error: {message}\n")
    sys.exit(errors.EXIT_USAGE)


def run_main(require_supernet: bool) -> None:
    def main(argv):
        if len(argv) > 1:
            sys.stderr.write(f"error: unexpected arguments {argv[1:]}\n")
            sys.exit(errors.EXIT_USAGE)
        if CONFIG.value is None or not WORKDIR.value:
            sys.stderr.write(
                "error: both --config=experiments/configs/FILE.py:PRESET and "
                "--workdir=DIR are required\n"
            )
            sys.exit(errors.EXIT_USAGE)
        from rldarts.run import compile_cache, experiment  # heavy imports after flags

        workdir = os.path.abspath(WORKDIR.value)
        try:
            cache = compile_cache.enable()  # before the first compile
        except ValueError as e:
            errors.exit_with(e, errors.EXIT_USAGE)
        try:
            try:
                result = experiment.run(CONFIG.value, workdir, require_supernet)
            finally:  # also when it stops or fails: each attempt in a sweep log shows its hits
                if cache.requests or cache.directory is None:
                    print(cache.summary(), flush=True)
        except (ValueError, experiment.NonFiniteLossError) as e:
            errors.exit_with(e, errors.EXIT_REFUSED)  # the same input fails again
        except run_lifecycle.WorkdirLocked as e:
            errors.exit_with(e, e.exit_code)
        except run_lifecycle.Interrupted as e:
            sys.stderr.write(
                f"error: interrupted by {e}; stopped between iterations, nothing "
                "half-written; run the same command to resume from the last checkpoint "
                f"in {os.path.join(workdir, 'checkpoints')}\n"
            )
            sys.exit(e.exit_code)
        print(f"\ndone: {result['env_steps']:,} env steps in {workdir}")
        for name, what in [
            ("metrics.csv", "metrics"),
            ("tb", "TensorBoard events"),
            ("genotype.json", "genotype"),
            ("cells", "cell diagrams"),
            ("alpha_evolution.png", "alpha plot"),
            ("checkpoints", "checkpoints"),
        ]:
            path = os.path.join(workdir, name)
            if os.path.exists(path):
                print(f"  {what:<20} {path}")

    app.run(main, flags_parser=parse_flags)
