"""Meta-World ML1 / ML10 as metarl families (the metaworld extra; skipped cleanly without it)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from metarl.cli import main
from metarl.tasks import Task
from tests.conftest import requires_extra
from tests.test_entry_points import TINY

ML1 = "metarl/MetaWorldML1-v0"
SHORT = ["--max-episode-steps", "10", "--iterations", "2", "--no-progress"]


@requires_extra("metaworld")
def test_ml1_reach_has_disjoint_train_and_test_goals():
    env = gym.make(ML1)
    family = env.unwrapped
    assert len(family.train_tasks) == 50 and len(family.test_tasks) == 50
    goals = {}
    for split in ("train", "test"):
        goals[split] = set()
        for task in getattr(family, f"{split}_tasks")[:10]:
            family.set_task(task)
            goals[split].add(tuple(np.round(family._current._last_rand_vec, 6)))
    assert goals["train"].isdisjoint(goals["test"])
    chosen = gym.make(ML1, task={"name": "reach-v3", "split": "test", "index": 3}).unwrapped.get_task()
    assert chosen == Task.create("MetaWorldML1", name="reach-v3", split="test", index=3)
    with pytest.raises(ValueError, match="an index within it"):
        family.set_task({"name": "reach-v3", "split": "test", "index": 50})
    with pytest.raises(ValueError, match="no ML1 task class"):
        gym.make(ML1, env_name="reach-v9")


@requires_extra("metaworld")
def test_ml10_tests_on_held_out_task_classes():
    family = gym.make("metarl/MetaWorldML10-v0").unwrapped
    train = {t["name"] for t in family.train_tasks}
    test = {t["name"] for t in family.test_tasks}
    assert len(train) == 10 and len(test) == 5 and train.isdisjoint(test)


@requires_extra("metaworld")
@pytest.mark.parametrize("algo", ["maml-trpo", "rl2-ppo"])
def test_two_iterations_on_ml1_reach_meta_test_success_on_test_tasks(algo, tmp_path):
    logdir = tmp_path / algo
    assert main(["train", "--algo", algo, "--env", ML1, "--logdir", str(logdir), *SHORT, *TINY[algo]]) == 0
    result = json.loads((logdir / "metatest.json").read_text())
    assert result["task_split"] == "test"
    assert all(Task.from_json(t)["split"] == "test" for t in result["tasks"])
    key = "success_rate_by_step" if algo == "maml-trpo" else "rl2_success_rate_by_episode"
    assert all(0.0 <= s <= 1.0 for s in result[key])
