import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rldarts.run.checkpoint import Checkpointer, CheckpointMismatchError

FP = {"network": "darts_standard", "env_name": "starpilot", "lr": 5e-4, "layers": (16, 32)}


def _state(seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    params = {
        "params": {
            "conv": {"kernel": jax.random.normal(k1, (3, 3, 3, 8)), "bias": jnp.zeros(8)},
            "dense": {"kernel": jax.random.normal(k2, (8, 4)), "bias": jnp.ones(4)},
        }
    }
    alphas = [jnp.full((14, 8), 0.1 * seed), jnp.arange(14 * 8, dtype=jnp.float32).reshape(14, 8)]
    tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-3))
    opt_state = tx.init((params, alphas))
    # Take one step so the optimiser moments/counter are non-trivial.
    grads = jax.tree.map(jnp.ones_like, (params, alphas))
    _, opt_state = tx.update(grads, opt_state, (params, alphas))
    return {
        "params": params,
        "alphas": alphas,
        "opt_state": opt_state,
        "obs_mean": np.linspace(0, 1, 5),
        "step": jnp.asarray(seed, jnp.int32),
    }


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.shape(x) == np.shape(y) and np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


HOST = {"env_steps": 4096, "updates": 2, "rng": [0, 42], "ret_rms": {"mean": [0.5], "var": [2.0]}}


def test_round_trip_and_latest_step(tmp_path):
    ck = Checkpointer(tmp_path / "ckpt", FP)
    assert ck.latest_step() is None
    with pytest.raises(FileNotFoundError):
        ck.restore(_state())
    state = _state(1)
    assert ck.save(4096, state, HOST)
    assert not ck.save(4096, state, HOST)  # already saved: no-op
    assert ck.latest_step() == 4096
    assert json.loads((tmp_path / "ckpt" / "fingerprint.json").read_text())["layers"] == [16, 32]
    # A fresh Checkpointer (as after a restart) restores into the template's structure.
    ck2 = Checkpointer(tmp_path / "ckpt", FP)
    ck2.check_fingerprint()
    restored, host = ck2.restore(_state(0))
    _assert_same(restored, state)
    assert host == HOST
    assert type(restored["opt_state"][1][0]) is type(state["opt_state"][1][0])  # ScaleByAdamState
    assert isinstance(restored["alphas"], list)
    assert isinstance(restored["params"]["params"]["dense"]["kernel"], jax.Array)
    assert isinstance(restored["obs_mean"], np.ndarray)
    # Abstract templates work too.
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), state)
    restored, _ = ck2.restore(abstract)
    np.testing.assert_array_equal(restored["alphas"][1], state["alphas"][1])


def test_max_to_keep_and_restore_older(tmp_path):
    ck = Checkpointer(tmp_path, FP, max_to_keep=2)
    for i, step in enumerate((10, 20, 30)):
        ck.save(step, _state(i), dict(HOST, env_steps=step))
    assert ck.all_steps() == [20, 30]
    assert sorted(n for n in os.listdir(tmp_path) if n.isdigit()) == ["20", "30"]
    restored, host = ck.restore(_state(), step=20)
    assert host["env_steps"] == 20
    _assert_same(restored, _state(1))
    with pytest.raises(FileNotFoundError):
        ck.restore(_state(), step=10)


def test_fingerprint_mismatch(tmp_path):
    Checkpointer(tmp_path / "x", dict(FP, network="impala")).save(1, _state(), HOST)
    ck = Checkpointer(tmp_path / "x", FP)
    with pytest.raises(CheckpointMismatchError) as e:
        ck.check_fingerprint()
    msg = str(e.value)
    assert "\n" not in msg
    assert "was made with a different config" in msg
    assert "network: 'impala' (checkpoint) vs 'darts_standard' (now)" in msg
    assert "env_name" not in msg
    with pytest.raises(CheckpointMismatchError):
        ck.restore(_state())
    with pytest.raises(CheckpointMismatchError):
        ck.save(2, _state(), HOST)
    # Added / removed keys are named as well.
    ck3 = Checkpointer(tmp_path / "x", dict(FP, network="impala", new_key=3))
    with pytest.raises(CheckpointMismatchError, match=r"new_key: '<missing>' \(checkpoint\) vs 3"):
        ck3.check_fingerprint()
    assert isinstance(e.value, ValueError)


def test_structure_mismatch(tmp_path):
    ck = Checkpointer(tmp_path, FP)
    ck.save(5, _state(), HOST)
    bad_shape = _state()
    bad_shape["alphas"][0] = jnp.zeros((14, 7))
    with pytest.raises(CheckpointMismatchError) as e:
        ck.restore(bad_shape)
    msg = str(e.value)
    assert "\n" not in msg and "['alphas'][0]: float32[14, 8] (checkpoint) vs float32[14, 7]" in msg
    extra = dict(_state(), extra=jnp.zeros(3))
    with pytest.raises(CheckpointMismatchError, match=r"\['extra'\] missing in checkpoint"):
        ck.restore(extra)
    fewer = _state()
    del fewer["obs_mean"]
    with pytest.raises(CheckpointMismatchError, match=r"\['obs_mean'\] missing in current state"):
        ck.restore(fewer)
    wrong_dtype = dict(_state(), step=jnp.asarray(0.0))
    with pytest.raises(CheckpointMismatchError, match="int32\\[\\] \\(checkpoint\\) vs float32"):
        ck.restore(wrong_dtype)
    # The good template still works afterwards.
    _assert_same(ck.restore(_state())[0], _state())


def test_interrupted_save_keeps_previous(tmp_path):
    ck = Checkpointer(tmp_path, FP)
    ck.save(100, _state(1), HOST)
    # A crash mid-save leaves orbax's tmp dir and/or a partial step dir behind.
    shutil.copytree(tmp_path / "100", tmp_path / "200.orbax-checkpoint-tmp-1234567")
    os.makedirs(tmp_path / "300" / "state")
    (tmp_path / "300" / "state" / "garbage").write_text("x")
    shutil.copytree(tmp_path / "100", tmp_path / "400")
    os.remove(tmp_path / "400" / "host" / "metadata")  # host JSON never written
    for reader in (ck, Checkpointer(tmp_path, FP)):  # opening a reader deletes nothing
        assert reader.latest_step() == 100
        restored, host = reader.restore(_state())
        _assert_same(restored, _state(1))
        assert host == HOST
    assert os.path.isdir(tmp_path / "200.orbax-checkpoint-tmp-1234567")
    # The next save clears the debris and becomes the latest checkpoint.
    ck.save(300, _state(2), dict(HOST, env_steps=300))
    assert ck.all_steps() == [100, 300]
    assert sorted(os.listdir(tmp_path)) == ["100", "300", "fingerprint.json"]
    restored, host = ck.restore(_state())
    _assert_same(restored, _state(2))
    assert host["env_steps"] == 300
