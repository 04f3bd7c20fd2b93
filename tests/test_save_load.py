"""Checkpoints: atomic writes, clear errors for bad files, resume continues the same curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import metarl.checkpoint as ckpt_mod
from metarl.agents.maml_trpo import MAMLTRPO
from metarl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from metarl.training import run_meta_training


def scalars(logdir, tag="rollout/return_after_adaptation"):
    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def test_kill_during_save_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"iteration": 1, "algorithm": {}, "config": {}})

    def dying_save(obj, f):
        f.write(b"partial bytes of a checkpoint")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(ckpt_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"iteration": 2, "algorithm": {}, "config": {}})
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"], "no temp file left behind"


def test_unreadable_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path)
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"\x00garbage, not a torch file")
    with pytest.raises(CheckpointError, match="unreadable.*corrupt"):
        load_checkpoint(bad)
    torch.save({"weights": 1}, bad)
    with pytest.raises(CheckpointError, match="not a metarl checkpoint"):
        load_checkpoint(tmp_path)


def _run(cfg, logdir, iterations, resume=False):
    torch.manual_seed(0)
    return run_meta_training(MAMLTRPO(cfg), iterations=iterations, seed=3, logdir=logdir, resume=resume,
                             checkpoint_every=1, progress=False, print_fn=None)


def test_resume_gives_the_same_curve_as_an_uninterrupted_run(tmp_path, tiny_maml_config):
    full = _run(tiny_maml_config, tmp_path / "full", 4)
    _run(tiny_maml_config, tmp_path / "split", 2)
    resumed = _run(tiny_maml_config, tmp_path / "split", 4, resume=True)
    assert scalars(tmp_path / "split") == scalars(tmp_path / "full")
    assert len(scalars(tmp_path / "full")) == 4
    assert resumed["returns_by_step"] == full["returns_by_step"]
    a = load_checkpoint(tmp_path / "full")["algorithm"]["policy"]
    b = load_checkpoint(tmp_path / "split")["algorithm"]["policy"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_changed_settings_and_fresh_runs_refuse_old_dirs(tmp_path, tiny_maml_config):
    import dataclasses

    _run(tiny_maml_config, tmp_path, 1)
    with pytest.raises(CheckpointError, match="settings differ.*inner_lr"):
        _run(dataclasses.replace(tiny_maml_config, inner_lr=0.5), tmp_path, 2, resume=True)
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        _run(tiny_maml_config, tmp_path, 2)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        _run(tiny_maml_config, tmp_path / "empty", 2, resume=True)


def test_resume_accepts_checkpoints_written_before_a_setting_existed(tmp_path, tiny_maml_config):
    """A checkpoint from an older version lacks settings added since (e.g. ``weight_init``); their
    defaults are the old behaviour, so it resumes, while a setting it does hold must still match."""
    import dataclasses

    _run(tiny_maml_config, tmp_path, 1)
    state = load_checkpoint(tmp_path)
    del state["config"]["weight_init"]
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    assert _run(tiny_maml_config, tmp_path, 2, resume=True)["train_seconds"] > 0
    assert load_checkpoint(tmp_path)["iteration"] == 2
    glorot = dataclasses.replace(tiny_maml_config, weight_init="glorot")
    with pytest.raises(CheckpointError, match="settings differ.*weight_init"):
        _run(glorot, tmp_path, 3, resume=True)
    torch.manual_seed(0)
    first = MAMLTRPO(glorot).policy.mean_net[0]
    assert torch.count_nonzero(first.bias) == 0, "the config's weight_init reaches the policy"


def test_checkpoint_holds_model_rng_iteration_and_config(tmp_path, tiny_maml_config):
    _run(tiny_maml_config, tmp_path, 2)
    state = load_checkpoint(tmp_path)
    assert state["iteration"] == 2 and state["samples"] > 0
    assert state["config"]["inner_lr"] == tiny_maml_config.inner_lr and state["config"]["seed"] == 3
    assert "policy" in state["algorithm"] and "numpy" in state["rng"]
    assert isinstance(np.random.default_rng().bit_generator.state, dict)
