"""Fixed train/test task sets, ``gymnasium.make(id, task=...)``, ``gymnasium.make_vec`` over the fast path,
and the Meta-World families' message without their extra."""

from __future__ import annotations

import json
import sys

import gymnasium as gym
import numpy as np
import pytest

from metarl.cli import main
from metarl.envs.navigation import Navigation2DEnv
from metarl.sampler import EpisodeSampler
from metarl.tasks import Task, draw_tasks, has_task_splits
from metarl.vector import FamilyVectorEnv
from tests.test_entry_points import TINY


class SplitNavigation(Navigation2DEnv):
    """Navigation2D with four fixed training goals and three other test goals."""

    train_tasks = [Task.create("Navigation2D", goal=g) for g in ((0.4, 0.4), (-0.4, 0.4), (0.4, -0.4), (-0.4, -0.4))]
    test_tasks = [Task.create("Navigation2D", goal=g) for g in ((0.0, 0.3), (0.3, 0.0), (-0.2, -0.1))]


gym.register("tests/SplitNavigation-v0", entry_point=SplitNavigation, max_episode_steps=6)


def test_draw_tasks_from_fixed_sets_and_from_a_split_parameter():
    family = SplitNavigation()
    assert has_task_splits(family) and not has_task_splits(Navigation2DEnv())
    rng = np.random.default_rng(0)
    three = draw_tasks(family, 3, rng, "train")
    assert len(set(three)) == 3 and set(three) <= set(family.train_tasks)
    ten = draw_tasks(family, 10, rng, "test")
    assert set(ten) == set(family.test_tasks) and all(ten.count(t) in (3, 4) for t in family.test_tasks)
    # a family without splits draws as before, whatever the split
    plain = Navigation2DEnv()
    assert draw_tasks(plain, 4, np.random.default_rng(1), "test") == plain.sample_tasks(4, np.random.default_rng(1))

    class ByParameter(Navigation2DEnv):
        def sample_tasks(self, n, rng, split="train"):
            low = 0.0 if split == "train" else -0.5
            return [Task.create("Navigation2D", goal=g) for g in rng.uniform(low, low + 0.5, size=(n, 2))]

    family = ByParameter()
    assert all(min(t["goal"]) >= 0 for t in draw_tasks(family, 5, rng, "train"))
    assert all(max(t["goal"]) <= 0 for t in draw_tasks(family, 5, rng, "test"))
    with pytest.raises(ValueError, match="split must be one of"):
        draw_tasks(family, 1, rng, "validation")


@pytest.mark.parametrize("algo", ["maml-trpo", "rl2-ppo", "pearl"])
def test_training_draws_train_tasks_and_the_meta_test_test_tasks(algo, tmp_path, monkeypatch):
    drawn: list[tuple[str | None, list]] = []
    original = EpisodeSampler.sample_tasks

    def record(self, n, rng, split=None):
        tasks = original(self, n, rng, split)
        drawn.append((split, tasks))
        return tasks

    monkeypatch.setattr(EpisodeSampler, "sample_tasks", record)
    logdir = tmp_path / algo
    assert main(["train", "--algo", algo, "--env", "tests/SplitNavigation-v0", "--iterations", "2", "--logdir",
                 str(logdir), "--no-progress", *TINY[algo], "--eval-every", "1", "--eval-tasks", "2"]) == 0
    family = SplitNavigation()
    assert {split for split, _ in drawn} == {"train", "test"}
    for split, tasks in drawn:
        assert set(tasks) <= set(getattr(family, f"{split}_tasks")), split
    result = json.loads((logdir / "metatest.json").read_text())
    assert result["task_split"] == "test"
    assert {Task.from_json(t) for t in result["tasks"]} <= set(family.test_tasks)


def test_make_with_a_task_and_its_errors():
    env = gym.make("metarl/HalfCheetahVel-v0", task={"velocity": 1.25})
    assert env.unwrapped.get_task() == Task.create("HalfCheetahVel", velocity=1.25)
    task = env.unwrapped.sample_tasks(1, np.random.default_rng(0))[0]
    assert gym.make("metarl/HalfCheetahVel-v0", task=task).unwrapped.get_task() == task
    with pytest.raises(ValueError, match="out of range"):
        gym.make("metarl/HalfCheetahVel-v0", task={"velocity": 9.0})
    with pytest.raises(ValueError, match="must have parameters"):
        gym.make("metarl/Navigation2D-v0", task={"velocity": 1.0})


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/HalfCheetahVel-v0", "metarl/AntGoal-v0"])
def test_make_vec_steps_each_sub_env_as_its_own_env(env_id):
    """Sub-env i, with its own task, gives the observations and rewards of ``gym.make(id, task=...)`` reset with
    the same seed, through its whole first episode, then restarts (NEXT_STEP autoreset)."""
    n, horizon = 3, 7
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", max_episode_steps=horizon)
    assert isinstance(envs.unwrapped, FamilyVectorEnv)
    tasks = envs.unwrapped.sample_tasks(n, np.random.default_rng(3))
    envs.unwrapped.set_task(tasks)
    assert envs.unwrapped.get_task() == tasks
    singles = [gym.make(env_id, task=t, max_episode_steps=horizon) for t in tasks]
    obs, _ = envs.reset(seed=10)
    single_obs = [e.reset(seed=10 + i)[0] for i, e in enumerate(singles)]
    np.testing.assert_allclose(obs, np.stack(single_obs), rtol=1e-6, atol=1e-6)
    rng = np.random.default_rng(0)
    alive = np.ones(n, dtype=bool)
    for _ in range(horizon):
        actions = rng.uniform(envs.single_action_space.low, envs.single_action_space.high,
                              size=(n, *envs.single_action_space.shape)).astype(np.float32)
        obs, reward, term, trunc, _ = envs.step(actions)
        for i, env in enumerate(singles):
            if alive[i]:
                o, r, t, tr, _ = env.step(actions[i])
                np.testing.assert_allclose(obs[i], o, rtol=1e-5, atol=1e-5)
                assert reward[i] == pytest.approx(r, rel=1e-5, abs=1e-5) and (term[i], trunc[i]) == (t, tr)
                alive[i] = not (t or tr)
    assert not alive.any(), "every first episode ended within the horizon"
    ended = term | trunc
    obs, reward, term, trunc, _ = envs.step(np.zeros((n, *envs.single_action_space.shape), dtype=np.float32))
    assert np.all(reward[ended] == 0) and not (term[ended] | trunc[ended]).any(), "ended sub-envs restart"
    envs.close()


def test_same_step_autoreset_and_the_sb3_vec_env():
    from stable_baselines3 import PPO

    from metarl.vector import sb3_vec_env

    envs = FamilyVectorEnv("metarl/Navigation2D-v0", 2, max_episode_steps=3, autoreset_mode="same_step")
    envs.reset(seed=0)
    for _ in range(3):
        obs, _, _, truncated, info = envs.step(np.full((2, 2), 0.1, dtype=np.float32))
    assert truncated.all() and np.allclose(obs, 0) and np.allclose(np.stack(info["final_obs"]), 0.3)
    venv = sb3_vec_env("metarl/Navigation2D-v0", 2, max_episode_steps=3, task={"goal": (0.4, 0.4)})
    venv.seed(1)
    venv.reset()
    for _ in range(3):
        obs, reward, dones, infos = venv.step(np.full((2, 2), 0.1, dtype=np.float32))
    assert dones.all() and infos[0]["TimeLimit.truncated"] and np.allclose(infos[1]["terminal_observation"], 0.3)
    assert reward[0] == pytest.approx(-np.hypot(0.1, 0.1), rel=1e-5)
    assert [tuple(t.to_json()["params"]["goal"]) for t in venv.get_task()] == [(0.4, 0.4)] * 2
    PPO("MlpPolicy", venv, n_steps=8, batch_size=16, n_epochs=1).learn(32)
    with pytest.raises(ValueError, match="autoreset_mode must be"):
        FamilyVectorEnv("metarl/Navigation2D-v0", 2, autoreset_mode="sometimes")


def test_vector_env_errors():
    envs = gym.make_vec("metarl/Navigation2D-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(ValueError, match="one task per sub-env"):
        envs.unwrapped.set_task([Task.create("Navigation2D", goal=(0.1, 0.1))] * 3)
    with pytest.raises(RuntimeError, match="call reset"):
        envs.step(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="one seed per sub-env"):
        envs.reset(seed=[1, 2, 3])


def test_meta_world_families_name_their_extra_when_it_is_missing(tmp_path, monkeypatch, capsys):
    from metarl.envs import meta_world

    monkeypatch.setitem(sys.modules, "metaworld", None)
    meta_world.metaworld_benchmark.cache_clear()
    assert main(["train", "--env", "metarl/MetaWorldML1-v0", "--iterations", "1", "--logdir",
                 str(tmp_path / "mw"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'metarl[metaworld]'" in err and "Traceback" not in err
    assert main(["envs"]) == 0
    assert "metarl/MetaWorldML1-v0  (needs: pip install 'metarl[metaworld]')" in capsys.readouterr().out
    meta_world.metaworld_benchmark.cache_clear()
