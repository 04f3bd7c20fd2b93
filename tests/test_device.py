"""``--device``: the CPU default, ``auto``, a clear error for ``cuda`` without CUDA, and the CUDA check script's
comparison (run here CPU against CPU; on a GPU machine ``python scripts/check_cuda.py``)."""

from __future__ import annotations

import pytest
import torch

from metarl.cli import main
from tests.conftest import load_script

NAV = ["--algo", "maml-trpo", "--env", "metarl/Navigation2D-v0", "--iterations", "1", "--meta-batch-size", "2",
       "--episodes-per-task", "2", "--metatest-tasks", "2", "--no-progress"]


def test_device_auto_and_cuda_without_cuda(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", *NAV, "--device", "auto", "--logdir", str(tmp_path / "auto")]) == 0
    assert main(["train", *NAV, "--device", "cuda", "--logdir", str(tmp_path / "cuda")]) == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and "torch.cuda.is_available() is False" in err and "Traceback" not in err


SMALL = {
    "maml-trpo": {"env": "metarl/Navigation2D-v0", "meta_batch_size": 3, "episodes_per_task": 2},
    "rl2-ppo": {"env": "metarl/BernoulliBandit-v0", "meta_batch_size": 4, "num_minibatches": 2},
    "pearl": {"env": "metarl/Navigation2D-v0", "train_tasks": 4, "tasks_per_iteration": 2, "meta_batch_size": 2,
              "initial_episodes": 1, "batch_size": 8, "context_size": 8, "gradient_steps": 2},
}


@pytest.mark.parametrize("algo", sorted(SMALL))
def test_the_cuda_check_compares_one_meta_update(algo, monkeypatch):
    check_cuda = load_script("check_cuda")
    monkeypatch.setitem(check_cuda.CHECKS, algo, (algo, SMALL[algo]))
    result = check_cuda.check(algo, iterations=0, tolerance=1e-4, devices=("cpu", "cpu"))
    assert result["passed"] and result["relative_step_error"] == 0.0
    assert result["episode_drift"] and max(result["episode_drift"]) == 0.0  # the second run replayed the first's
    if not torch.cuda.is_available():
        assert check_cuda.main(["--checks", algo]) == 2  # says it needs a GPU


def test_the_cuda_check_times_sampling_and_the_outer_step(monkeypatch):
    check_cuda = load_script("check_cuda")
    monkeypatch.setitem(check_cuda.CHECKS, "maml-trpo", ("maml-trpo", SMALL["maml-trpo"]))
    result = check_cuda.check("maml-trpo", iterations=1, tolerance=1e-4, devices=("cpu", "cpu"))
    assert result["cpu_sampling_seconds"] > 0 and result["cpu_outer_step_seconds"] > 0
    assert result["cpu_seconds_per_iteration"] >= result["cpu_sampling_seconds"] + result["cpu_outer_step_seconds"]
