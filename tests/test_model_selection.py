"""Model selection: validation scores during meta-training and the best checkpoint (``eval_every``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest
import torch

from metarl.agents.maml_trpo import MAMLTRPO
from metarl.checkpoint import CheckpointError, load_checkpoint
from metarl.cli import train_main
from metarl.registry import load_run
from metarl.algorithm import MetaAlgorithm
from metarl.training import run_meta_training
from tests.test_save_load import scalars


class ScriptedLearner(MetaAlgorithm):
    """A learner whose 'weights' count its meta-iterations and whose validation score follows a script."""

    name = "scripted"

    def __init__(self, scores: list[float]):
        self.scores = scores
        self.weights = 0

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        self.weights += 1
        return {"samples": 1, "rollout/noise": float(rng.normal())}

    def validation_scores(self, n_tasks: int, seed: int) -> dict[str, float]:
        return {"score": self.scores[self.weights - 1], "tasks": float(n_tasks)}

    def meta_test(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def metatest_scalars(self, result: dict[str, Any]) -> dict[str, float]:
        return {"weights": float(result["weights"])}

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"]

    def config(self) -> dict[str, Any]:
        return {"algo": self.name}


def _scripted(logdir, scores, iterations, resume=False, **kwargs):
    return run_meta_training(ScriptedLearner(scores), iterations=iterations, seed=0, logdir=logdir, resume=resume,
                             progress=False, print_fn=None, **{"eval_every": 1, "checkpoint_every": 100, **kwargs})


def test_best_checkpoint_is_the_state_with_the_best_validation_score(tmp_path):
    scores = [1.0, 3.0, 2.0, 0.5, 2.75]
    result = _scripted(tmp_path, scores, 5)
    assert result["weights"] == 5, "metatest.json stays the last state's"
    assert result["best"]["iteration"] == 2 and result["best"]["validation_score"] == 3.0
    best = json.loads((tmp_path / "metatest_best.json").read_text())
    assert best["weights"] == 2 and best["iteration"] == 2
    assert best["validation"] == {"score": 3.0, "tasks": 20, "seed": 4321}
    assert load_checkpoint(tmp_path / "best.pt")["algorithm"] == {"weights": 2}
    assert [v for _, v in scalars(tmp_path, "eval/score")] == scores
    assert scalars(tmp_path, "metatest_best/weights")[0][1] == 2.0


def test_eval_every_scores_every_nth_iteration_and_a_new_best_also_checkpoints(tmp_path):
    scores = [5.0, 1.0, 2.0, 9.0, 3.0, 4.0]
    result = _scripted(tmp_path, scores, 6, eval_every=2, eval_tasks=7)
    assert [v for _, v in scalars(tmp_path, "eval/score")] == [1.0, 9.0, 4.0]
    assert [v for _, v in scalars(tmp_path, "eval/tasks")] == [7.0] * 3
    assert result["best"]["iteration"] == 4
    # the run's checkpoint is never older than its best state, so a resume cannot lose it
    assert load_checkpoint(tmp_path)["evaluation"]["best_iteration"] == 4


def test_resume_keeps_the_best_so_far(tmp_path):
    scores = [1.0, 3.0, 2.0, 0.5, 2.75, 4.0]
    _scripted(tmp_path, scores, 3, checkpoint_every=1)
    result = _scripted(tmp_path, scores, 5, resume=True)
    assert result["best"]["iteration"] == 2, "the lower scores after the resume do not replace it"
    result = _scripted(tmp_path, scores, 6, resume=True)
    assert result["best"]["iteration"] == 6 and result["best"]["validation_score"] == 4.0
    with pytest.raises(CheckpointError, match="validation tasks of seed 4321.*resume with the run's validation"):
        _scripted(tmp_path, scores, 6, resume=True, eval_seed=7)


def test_validation_settings_are_checked(tmp_path, tiny_maml_config):
    with pytest.raises(ValueError, match="eval_every must be an integer >= 0"):
        _scripted(tmp_path, [1.0], 1, eval_every=-1)
    with pytest.raises(ValueError, match="eval_tasks must be an integer >= 1"):
        _scripted(tmp_path, [1.0], 1, eval_tasks=0)

    class NoValidation(ScriptedLearner):
        validation_scores = MetaAlgorithm.validation_scores

    with pytest.raises(ValueError, match="no validation score; run it without eval_every"):
        run_meta_training(NoValidation([]), iterations=1, seed=0, logdir=tmp_path / "b", eval_every=1,
                          progress=False, print_fn=None)
    with pytest.raises(ValueError, match="equals metatest_seed: choose another --eval-seed"):
        MAMLTRPO(tiny_maml_config).validation_scores(3, tiny_maml_config.metatest_seed)
    with pytest.raises(ValueError, match="equals metatest_seed: choose another --eval-seed"):
        run_meta_training(MAMLTRPO(tiny_maml_config), iterations=2, seed=0, logdir=tmp_path / "c", eval_every=1,
                          eval_seed=tiny_maml_config.metatest_seed, progress=False, print_fn=None)
    assert not (tmp_path / "c" / "checkpoint.pt").exists(), "refused before training"


@pytest.mark.parametrize("baseline", ["linear", "value"])
def test_validation_leaves_the_training_curve_unchanged(tmp_path, tiny_maml_config, baseline):
    cfg = dataclasses.replace(tiny_maml_config, baseline=baseline)
    results = []
    for name, every in (("plain", 0), ("validated", 1)):
        torch.manual_seed(0)
        results.append(run_meta_training(MAMLTRPO(cfg), iterations=3, seed=1, logdir=tmp_path / name,
                                         eval_every=every, eval_tasks=3, progress=False, print_fn=None))
    assert scalars(tmp_path / "plain") == scalars(tmp_path / "validated")
    assert results[0]["returns_by_step"] == results[1]["returns_by_step"]
    a, b = (load_checkpoint(tmp_path / name)["algorithm"] for name in ("plain", "validated"))
    assert all(torch.equal(a["policy"][k], b["policy"][k]) for k in a["policy"])
    scores = scalars(tmp_path / "validated", "eval/score")
    assert len(scores) == 3 and all(np.isfinite(v) for _, v in scores)
    assert scores == scalars(tmp_path / "validated", "eval/return_after_1_steps")


def test_rl2_validation_leaves_the_training_curve_unchanged(tmp_path):
    from metarl.agents.rl2 import RL2Config, RL2PPO

    cfg = RL2Config(env="metarl/BernoulliBandit-v0", env_kwargs={"k": 3, "n": 5}, episodes_per_trial=1,
                    meta_batch_size=4, hidden_size=8, ppo_epochs=1, num_minibatches=2, metatest_tasks=4)
    for name, every in (("plain", 0), ("validated", 1)):
        torch.manual_seed(0)
        run_meta_training(RL2PPO(cfg), iterations=3, seed=1, logdir=tmp_path / name, eval_every=every,
                          eval_tasks=4, progress=False, print_fn=None)
    tag = "rollout/trial_return"
    assert len(scalars(tmp_path / "plain", tag)) == 3
    assert scalars(tmp_path / "plain", tag) == scalars(tmp_path / "validated", tag)
    assert len(scalars(tmp_path / "validated", "eval/score")) == 3


def test_rl2_validation_score_is_a_trial_return_on_its_own_tasks():
    from metarl.agents.rl2 import RL2Config, RL2PPO

    cfg = RL2Config(env="metarl/BernoulliBandit-v0", env_kwargs={"k": 3, "n": 5}, episodes_per_trial=1,
                    meta_batch_size=4, hidden_size=8)
    learner = RL2PPO(cfg)
    first = learner.validation_scores(6, 11)
    assert first == learner.validation_scores(6, 11), "the validation seed fixes tasks and trials"
    assert set(first) == {"score", "first_episode_return", "last_episode_return"}
    assert 0.0 <= first["score"] <= 5.0, "a 5-pull bandit trial earns at most 5"
    with pytest.raises(ValueError, match="equals metatest_seed"):
        learner.validation_scores(6, cfg.metatest_seed)


def test_cli_eval_flags_and_resume_keeps_the_runs_validation_settings(tmp_path):
    logdir = tmp_path / "run"
    tiny = ["--meta-batch-size", "2", "--episodes-per-task", "2", "--max-episode-steps", "5",
            "--hidden-sizes", "8", "--metatest-tasks", "2", "--metatest-steps", "1", "--cg-iters", "2",
            "--no-progress"]
    first = train_main(["--logdir", str(logdir), "--iterations", "2", "--eval-every", "1", "--eval-tasks", "2",
                        "--eval-seed", "99", *tiny])
    assert first["best"]["file"] == "metatest_best.json" and (logdir / "best.pt").exists()
    saved = load_checkpoint(logdir)["evaluation"]
    assert (saved["every"], saved["tasks"], saved["seed"]) == (1, 2, 99)
    train_main(["--resume", str(logdir), "--iterations", "3", "--no-progress"])
    assert len(scalars(logdir, "eval/score")) == 3, "the resumed run validates with its own settings"
    assert load_checkpoint(logdir)["evaluation"]["seed"] == 99
    best = load_run(logdir, best=True)
    saved = load_checkpoint(logdir / "best.pt")["algorithm"]["policy"]
    assert all(torch.equal(v, saved[k]) for k, v in best.policy.state_dict().items())
    (logdir / "best.pt").unlink()
    with pytest.raises(CheckpointError, match="only runs trained with --eval-every keep a best"):
        load_run(logdir, best=True)
