"""Command-line mistakes end in one line `error: ...` naming the problem and the valid
choices, a non-zero exit and no workdir; the binaries start without library log noise."""

import os
import subprocess
import sys

import pytest

from tests._binaries import ROOT, SEARCH, TRAIN, run_binary

PPO_KEYS = "adam_eps, anneal_lr, clip_eps"  # the start of ppo's sorted keys


def _one_line_error(proc, workdir):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    assert not os.path.exists(workdir), "a failed start must write nothing"
    return lines[0]


@pytest.mark.parametrize("binary,config", [("search", SEARCH), ("train", TRAIN)])
def test_misspelt_key_names_the_closest_key_and_the_section(tmp_path, binary, config):
    workdir = str(tmp_path / "run")
    proc = run_binary(binary, config, workdir, "--config.ppo.num_env=4", check=False)
    line = _one_line_error(proc, workdir)
    assert "unknown config key 'ppo.num_env'" in line
    assert "did you mean 'ppo.num_envs'?" in line
    assert f"valid keys of ppo: {PPO_KEYS}" in line


def test_unknown_key_without_a_close_match_lists_the_valid_keys(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_binary("search", SEARCH, workdir, "--config.ppo.foo=1", check=False)
    line = _one_line_error(proc, workdir)
    assert "unknown config key 'ppo.foo'" in line and "did you mean" not in line
    assert f"valid keys of ppo: {PPO_KEYS}" in line


def test_unknown_top_level_key_and_key_below_a_value(tmp_path):
    workdir = str(tmp_path / "run")
    line = _one_line_error(
        run_binary("search", SEARCH, workdir, "--config.seeed=1", check=False), workdir
    )
    assert "unknown config key 'seeed'" in line and "did you mean 'seed'?" in line
    assert "valid keys at the top level: agent, arch," in line
    line = _one_line_error(
        run_binary("search", SEARCH, workdir, "--config.ppo.num_envs.x=1", check=False), workdir
    )
    assert "'ppo.num_envs' holds a value (int), not a section" in line


@pytest.mark.parametrize("binary,file", [("search", "search.py"), ("train", "train.py")])
def test_unknown_preset_lists_the_presets(tmp_path, binary, file):
    workdir = str(tmp_path / "run")
    proc = run_binary(
        binary, f"--config=experiments/configs/{file}:nosuchpreset", workdir, check=False
    )
    line = _one_line_error(proc, workdir)
    assert "unknown preset 'nosuchpreset'" in line
    assert "valid presets: smoke, cpu_demo, paper, paper_official" in line


def test_missing_config_file_lists_the_config_files(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_binary("search", "--config=experiments/configs/serch.py:smoke", workdir, check=False)
    line = _one_line_error(proc, workdir)
    assert "config file 'experiments/configs/serch.py' not found" in line
    assert "experiments/configs/search.py" in line and "experiments/configs/train.py" in line


def test_value_of_the_wrong_type_is_one_line(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_binary("search", SEARCH, workdir, "--config.ppo.num_envs=many", check=False)
    line = _one_line_error(proc, workdir)
    assert "--config.ppo.num_envs=many" in line and "many" in line


def test_misspelt_flag_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.search", SEARCH, f"--wrkdir={tmp_path / 'run'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = _one_line_error(proc, str(tmp_path / "run"))
    assert "'wrkdir'" in line and "workdir" in line


_START = """
import sys
from absl import app
if sys.argv[1] == "quiet":
    import experiments.common  # noqa: F401  (what every binary imports first)
def main(argv):
    import jax
    import matplotlib.font_manager  # noqa: F401  (builds the font cache on first use)
    print(jax.devices())
app.run(main, argv=["start"])
"""


def test_binaries_start_without_tpu_and_font_cache_lines(tmp_path):
    def start(mode, mpl_dir):
        env = dict(os.environ, MPLCONFIGDIR=str(tmp_path / mpl_dir))
        env.pop("JAX_PLATFORMS", None)
        proc = subprocess.run(
            [sys.executable, "-c", _START, mode],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    noisy = start("noisy", "mpl_noisy")  # absl shows INFO lines unless told otherwise
    noise = [m for m in ("Unable to initialize backend", "fontManager") if m in noisy]
    if not noise:
        pytest.skip("this machine's libraries print neither line (a TPU host?)")
    quiet = start("quiet", "mpl_quiet")
    for marker in noise:
        assert marker not in quiet, quiet
