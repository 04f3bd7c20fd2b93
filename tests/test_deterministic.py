"""Determinism: the same seed gives the same tasks, episodes, curves and meta-test (trained twice)."""

from __future__ import annotations

import torch

from metarl.agents.maml_trpo import MAMLTRPO
from metarl.training import run_meta_training
from tests.test_save_load import scalars


def _train(cfg, logdir, seed):
    torch.manual_seed(seed)
    return run_meta_training(MAMLTRPO(cfg), iterations=3, seed=seed, logdir=logdir, progress=False, print_fn=None)


def test_same_seed_same_curve_different_seed_different_curve(tmp_path, tiny_maml_config):
    a = _train(tiny_maml_config, tmp_path / "a", 0)
    b = _train(tiny_maml_config, tmp_path / "b", 0)
    c = _train(tiny_maml_config, tmp_path / "c", 1)
    for tag in ("rollout/return_before_adaptation", "rollout/return_after_adaptation", "train/approx_kl"):
        assert scalars(tmp_path / "a", tag) == scalars(tmp_path / "b", tag)
    assert a["returns_by_step"] == b["returns_by_step"]
    assert scalars(tmp_path / "a") != scalars(tmp_path / "c")
