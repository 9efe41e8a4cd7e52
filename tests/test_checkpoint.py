"""Checkpoint files: atomic writes, RNG round trip, clear errors for missing/corrupt/foreign files."""
import random

import numpy as np
import pytest
import torch

from core import checkpoint as ckpt


def test_roundtrip_and_rng(tmp_path):
    torch.manual_seed(0)
    state = ckpt.rng_state()
    expected = (torch.rand(3), np.random.rand(), random.random())
    path = ckpt.save_atomic({"format": ckpt.FORMAT, "rng": [state], "x": torch.arange(4)}, tmp_path / "c.pt")
    assert not (tmp_path / "c.pt.tmp").exists()
    loaded = ckpt.load(path)
    ckpt.set_rng_state(loaded["rng"][0])
    again = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]
    assert torch.equal(loaded["x"], torch.arange(4))


def test_errors(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load(tmp_path / "missing.pt")
    path = ckpt.save_atomic({"format": ckpt.FORMAT, "w": torch.randn(1000)}, tmp_path / "c.pt")
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.load(tmp_path / "trunc.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a checkpoint written by this project"):
        ckpt.load(tmp_path / "foreign.pt")


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = ckpt.save_atomic({"format": ckpt.FORMAT, "v": 1}, tmp_path / "c.pt")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        ckpt.save_atomic({"format": ckpt.FORMAT, "v": 2}, path)
    assert ckpt.load(path)["v"] == 1


def test_snapshots_in_step_order_with_a_newer_latest(tmp_path):
    assert ckpt.snapshots(tmp_path) == []
    for step in (1000, 200):  # written out of order: listed by step
        ckpt.save_atomic({"format": ckpt.FORMAT, "step": step}, tmp_path / f"checkpoint-{step:07d}.pt")
    ckpt.save_atomic({"format": ckpt.FORMAT, "step": 1000}, tmp_path / ckpt.LATEST)  # the same step as the last snapshot: not listed
    assert [p.name for p in ckpt.snapshots(tmp_path)] == ["checkpoint-0000200.pt", "checkpoint-0001000.pt"]
    ckpt.save_atomic({"format": ckpt.FORMAT, "step": 1100}, tmp_path / ckpt.LATEST)
    assert ckpt.snapshots(tmp_path)[-1].name == ckpt.LATEST and len(ckpt.snapshots(tmp_path)) == 3
