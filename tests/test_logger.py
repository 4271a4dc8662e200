import csv
import json
import os

import numpy as np
import pytest

from rldarts.common.files import atomic_write_json, atomic_write_text
from rldarts.run.logger import MetricsLogger, format_progress, read_metrics


def _header(path):
    with open(path, newline="") as f:
        return next(csv.reader(f))


def test_rows_and_growing_columns(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.write({"env_steps": 100, "loss": 0.5, "sps": np.float32(0.1)})
        # Rows are flushed immediately: readable before close.
        assert read_metrics(tmp_path / "metrics.csv") == [
            {"env_steps": 100.0, "loss": 0.5, "sps": pytest.approx(0.1)}
        ]
        log.write({"env_steps": 200, "loss": 0.25, "episode_return_test": 3.5})
        log.write({"env_steps": 300, "loss": 0.125, "note": "hello"})
    rows = read_metrics(tmp_path / "metrics.csv")
    assert _header(tmp_path / "metrics.csv") == [
        "env_steps",
        "loss",
        "sps",
        "episode_return_test",
        "note",
    ]
    assert [r["env_steps"] for r in rows] == [100.0, 200.0, 300.0]
    assert rows[0]["episode_return_test"] is None and rows[1]["episode_return_test"] == 3.5
    assert rows[1]["sps"] is None
    assert rows[2]["note"] == "hello"
    with open(tmp_path / "metrics.csv") as f:
        assert "0.1," in f.read()  # float32 written in its short form
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_scalar_arrays_and_missing_env_steps(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.write({"env_steps": np.int64(7), "x": np.asarray(2.5), "flag": True})
        with pytest.raises(KeyError):
            log.write({"loss": 1.0})
    assert read_metrics(tmp_path / "metrics.csv") == [{"env_steps": 7.0, "x": 2.5, "flag": 1.0}]


def test_resume_drops_rows_after_checkpoint(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for s in (100, 200, 300, 400):
            log.write({"env_steps": s, "loss": s / 1000})
    with MetricsLogger(tmp_path, resume=True, resume_env_steps=200, tensorboard=False) as log:
        assert [r["env_steps"] for r in read_metrics(tmp_path / "metrics.csv")] == [100, 200]
        log.write({"env_steps": 300, "loss": 9.0, "episode_return_test": 1.0})
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["env_steps"] for r in rows] == [100, 200, 300]
    assert rows[2]["loss"] == 9.0
    # Resume without a step keeps everything; a fresh (non-resume) logger starts over.
    MetricsLogger(tmp_path, resume=True, tensorboard=False).close()
    assert len(read_metrics(tmp_path / "metrics.csv")) == 3
    MetricsLogger(tmp_path, tensorboard=False).close()
    assert read_metrics(tmp_path / "metrics.csv") == []


def test_tensorboard_events(tmp_path):
    with MetricsLogger(tmp_path) as log:
        log.write({"env_steps": 10, "loss": 1.0, "note": "text is skipped"})
        log.write({"env_steps": 20, "loss": 0.5})
    events = os.listdir(tmp_path / "tb")
    assert any(e.startswith("events.out.tfevents") for e in events)
    import struct

    from tensorboardX.proto import event_pb2 as ev

    scalars = []
    for name in events:
        data = open(tmp_path / "tb" / name, "rb").read()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            e = ev.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            scalars += [(e.step, v.tag, v.simple_value) for v in e.summary.value]
    assert (10, "loss", 1.0) in scalars and (20, "loss", 0.5) in scalars
    assert not [s for s in scalars if s[1] in ("note", "env_steps")]


def test_format_progress():
    line = format_progress(123_456, 1_000_000, 1234.4, 5.1234, 100.0)
    assert line.startswith("[  12.3%] steps 123,456/1,000,000 | 1,234 sps | return 5.12 | ETA ")
    assert "ETA 0:11:50" in line and "elapsed 0:01:40" in line
    assert "return n/a" in format_progress(0, 10, 0.0, None, 0.0)
    assert "ETA ?" in format_progress(0, 10, 0.0, float("nan"), 0.0)
    assert format_progress(10, 10, 5.0, 1.0, 2.0).startswith("[ 100.0%]")


def test_atomic_writes(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    atomic_write_json(tmp_path / "b.json", {"b": [1, 2], "a": 1.5})
    assert json.loads((tmp_path / "b.json").read_text()) == {"a": 1.5, "b": [1, 2]}
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "b.json", {"x": object()})
    assert json.loads((tmp_path / "b.json").read_text())["a"] == 1.5  # old content intact
    assert sorted(os.listdir(tmp_path)) == ["b.json", "sub"]  # no temp files left behind
