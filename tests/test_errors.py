"""rldarts.run.errors: the one line a binary stops on. Our own messages stand alone; a
ValueError raised inside a library names where it was raised and how to see the traceback;
RLDARTS_TRACEBACK=1 gives the traceback itself."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rldarts.model.genotypes import NetworkGenotype
from rldarts.run import errors
from tests._binaries import ROOT, TRAIN


def _caught(fn):
    try:
        fn()
    except ValueError as e:
        return e
    raise AssertionError("expected a ValueError")


def test_our_message_is_printed_as_it_is():
    e = _caught(lambda: NetworkGenotype.from_json("{not json"))
    assert errors.raised_by_us(e)
    line = errors.message(e)
    assert line.startswith("error: malformed genotype JSON: "), line
    assert "raised in" not in line and errors.TRACEBACK_ENV not in line


def test_library_error_names_where_it_was_raised():
    e = _caught(lambda: json.loads("{"))  # raised in Python code of the json package
    assert not errors.raised_by_us(e)
    file, lineno = errors.raised_at(e)
    assert file.endswith(os.path.join("json", "decoder.py")) and lineno > 0
    line = errors.message(e)
    assert line.startswith("error: JSONDecodeError: Expecting property name"), line
    assert f"(raised in {file}:{lineno}; RLDARTS_TRACEBACK=1 shows the traceback)" in line
    assert "\n" not in line


def test_error_of_a_c_function_called_by_our_code_is_not_ours():
    """int("x") raises from C: the last Python frame is rldarts' own call, which is not a
    raise statement, so the line still names where it happened."""
    from rldarts.learn import replay

    e = _caught(lambda: replay.PrioritizedReplay(capacity=64, num_envs="x", obs_shape=(2,)))
    assert not errors.raised_by_us(e), errors.raised_at(e)
    assert "raised in" in errors.message(e) and "replay.py" in errors.message(e)


def test_exit_with_prints_one_line_and_exits_non_zero(capsys, monkeypatch):
    monkeypatch.delenv(errors.TRACEBACK_ENV, raising=False)
    e = _caught(lambda: NetworkGenotype.from_json("[]"))
    with pytest.raises(SystemExit) as stop:
        errors.exit_with(e)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err == "error: malformed genotype JSON: expected an object\n"


def test_traceback_env_re_raises_the_error_itself(monkeypatch):
    monkeypatch.setenv(errors.TRACEBACK_ENV, "1")
    e = _caught(lambda: np.zeros(3).reshape(2, 2))
    with pytest.raises(ValueError, match="cannot reshape") as raised:
        errors.exit_with(e)
    assert raised.value is e


def test_binary_shows_the_traceback_on_request(tmp_path):
    """The train binary on a malformed genotype file: one line by default, the traceback
    (and the same message) with RLDARTS_TRACEBACK=1; nothing written either way."""
    bad = tmp_path / "genotype.json"
    bad.write_text("{not json")
    cmd = [sys.executable, "-m", "experiments.train", TRAIN, f"--config.genotype={bad}"]
    env = {k: v for k, v in os.environ.items() if k != errors.TRACEBACK_ENV}
    runs = {}
    for name, extra in [("plain", {}), ("traced", {errors.TRACEBACK_ENV: "1"})]:
        workdir = tmp_path / name
        runs[name] = subprocess.run(
            [*cmd, f"--workdir={workdir}"],
            cwd=ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert runs[name].returncode != 0, runs[name].stderr
        assert not workdir.exists()
    lines = [line for line in runs["plain"].stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "malformed genotype JSON" in lines[0] and "raised in" not in lines[0], lines
    assert "Traceback" in runs["traced"].stderr
    last = runs["traced"].stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: genotype file") and "malformed genotype JSON" in last
