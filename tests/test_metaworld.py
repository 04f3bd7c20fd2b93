"""Meta-World ML1 / ML10 as metarl families (the metaworld extra; skipped cleanly without it)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from metarl.cli import main
from metarl.tasks import Task

try:  # the batched backend's ports (its module needs nothing beyond MuJoCo; Meta-World itself is the extra)
    from metarl.envs.meta_world_batched import PORTED_CLASSES
except ImportError:  # pragma: no cover
    PORTED_CLASSES = ()
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


# ----- the batched backend ----------------------------------------------------------------------------------


def _scripted_actions(name: str, obs: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Meta-World's own scripted policy for the class (shown the hidden goal), noise on every other simulation:
    the episodes reach the objects, grasp, push and succeed, so every branch of the reward runs."""
    from metaworld.policies import ENV_POLICY_MAP

    policy = ENV_POLICY_MAP[name]()
    full = obs.copy()
    full[:, 36:39] = targets
    actions = np.stack([policy.get_action(x) for x in full])
    actions[1::2] += rng.normal(0.0, 0.4, size=actions[1::2].shape)
    return actions.astype(np.float32)


@requires_extra("metaworld")
@pytest.mark.parametrize("name", sorted(PORTED_CLASSES))
def test_batched_metaworld_equals_metaworlds_env(name):
    """Observations, rewards and success flags of the batched backend against Meta-World's own env on the same
    tasks and actions, over two episodes per simulation (the second from the cached reset)."""
    from metarl.envs.meta_world_batched import MetaWorldBatchedEnv

    family = gym.make(ML1, env_name=name).unwrapped
    tasks = [family.train_tasks[0], family.train_tasks[7], family.test_tasks[3]]
    batched = family.batched(tasks, 2)
    assert isinstance(batched, MetaWorldBatchedEnv)
    rng = np.random.default_rng(0)
    episodes = []  # per episode: observations (T+1, N, 39), rewards, successes, actions
    for steps in (120, 40):
        obs = [batched.reset(np.arange(6))]
        rewards, successes, actions = [], [], []
        targets = np.concatenate([g.constants["target"] for g in batched._groups])
        for _ in range(steps):
            a = _scripted_actions(name, obs[-1], targets, rng)
            o, r, terminated, truncated, info = batched.step(a)
            assert not terminated.any() and not truncated.any()
            obs.append(o), rewards.append(r), successes.append(info["success"]), actions.append(a)
        episodes.append([np.array(x) for x in (obs, rewards, successes, actions)])
    batched.close()
    reference = gym.make(ML1, env_name=name).unwrapped
    succeeded = 0
    for obs, rewards, successes, actions in episodes:
        for i in range(6):
            reference.set_task(tasks[i // 2])
            o, _ = reference.reset(seed=i)
            assert np.array_equal(o, obs[0, i])
            for t in range(len(actions)):
                o, r, _, _, info = reference.step(actions[t, i])
                assert np.allclose(o, obs[t + 1, i], rtol=0, atol=1e-12), (i, t)
                assert abs(r - rewards[t, i]) <= 1e-9, (i, t, r, rewards[t, i])
                assert info["success"] == successes[t, i], (i, t)
                succeeded += int(info["success"])
    assert succeeded > 10, "the scripted episodes reach the success region"


@requires_extra("metaworld")
def test_sampler_uses_the_batched_backend_where_every_class_is_ported_and_meta_world_envs_otherwise():
    from metarl.batched import GenericBatchedEnv, make_batched_env
    from metarl.envs.meta_world_batched import MetaWorldBatchedEnv

    ml10 = gym.make("metarl/MetaWorldML10-v0").unwrapped
    assert {t["name"] for t in ml10.train_tasks + ml10.test_tasks} <= set(PORTED_CLASSES), "all of ML10 is ported"
    backend = make_batched_env(lambda: gym.make("metarl/MetaWorldML10-v0"), ml10.train_tasks[:2], 1)
    assert isinstance(backend, MetaWorldBatchedEnv)
    backend.close()
    hammer = gym.make(ML1, env_name="hammer-v3").unwrapped
    assert isinstance(make_batched_env(lambda: gym.make(ML1, env_name="hammer-v3"), hammer.train_tasks[:1], 1),
                      GenericBatchedEnv)


@requires_extra("metaworld")
def test_batched_ml10_steps_all_fifteen_classes_in_one_batch_as_meta_world_does():
    family = gym.make("metarl/MetaWorldML10-v0").unwrapped
    first_of = {}
    for task in family.train_tasks + family.test_tasks:
        first_of.setdefault(task["name"], task)
    tasks = list(first_of.values())
    assert len(tasks) == 15
    batched = family.batched(tasks, 1)
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, size=(25, 15, 4)).astype(np.float32)
    obs, rewards, successes = [batched.reset(np.arange(15))], [], []
    for a in actions:
        o, r, _, _, info = batched.step(a)
        obs.append(o), rewards.append(r), successes.append(info["success"])
    batched.close()
    reference = gym.make("metarl/MetaWorldML10-v0").unwrapped
    for i, task in enumerate(tasks):
        reference.set_task(task)
        o, _ = reference.reset(seed=0)
        assert np.array_equal(o, obs[0][i]), task
        for t, a in enumerate(actions[:, i]):
            o, r, _, _, info = reference.step(a)
            assert np.allclose(o, obs[t + 1][i], rtol=0, atol=1e-12) and abs(r - rewards[t][i]) <= 1e-9, (task, t)
            assert info["success"] == successes[t][i]


@requires_extra("metaworld")
def test_batched_ml10_holds_whole_models_only_for_the_tasks_set_now():
    """A task's model is its class's model with the arrays Meta-World's reset changed (equal to the env's own model
    in every array field), and switching task sets drops the old tasks' models: ML10's 750 tasks held as whole
    ~20 MB models took 15 GB."""
    from metarl.envs.meta_world_batched import model_difference

    family = gym.make("metarl/MetaWorldML10-v0").unwrapped
    sets = [family.train_tasks[0:500:100], family.train_tasks[1:500:100], family.test_tasks[0:250:50]]
    batched = family.batched(sets[0], 2)
    reference = gym.make("metarl/MetaWorldML10-v0").unwrapped
    for tasks in sets:
        batched.set_tasks(tasks)
        batched.reset(np.arange(2 * len(tasks)))
        assert set(batched._task_models) == {(t["split"], t["index"]) for t in tasks}
        for task in tasks:
            reference.set_task(task)
            reference.reset(seed=0)
            assert model_difference(batched._task_model(task), reference._current.model) == {}, task
    moved = [batched._reset_cache[(t["split"], t["index"])][4] for t in sets[1]]  # other goals of sets[0]'s classes
    assert any(moved) and all(v.nbytes < 10_000 for d in moved for v in d.values())
    batched.close()


@requires_extra("metaworld")
def test_benchmark_script_compares_the_batched_and_generic_meta_world_backends(tmp_path):
    """The documented benchmark command, as a user runs it (a short run)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_mujoco.py"
    proc = subprocess.run([sys.executable, str(script), "--env", "metarl/MetaWorldML10-v0", "--num-sims", "3",
                           "--steps", "4", "--repeats", "1", "--json", str(tmp_path / "b.json")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "batched / generic" in proc.stdout
    result = json.loads((tmp_path / "b.json").read_text())
    assert set(result["steps_per_s"]) == {"batched", "generic", "bare_mj_step"}
    hammer = subprocess.run([sys.executable, str(script), "--env", ML1, "--env-kwargs", "env_name=hammer-v3",
                             "--num-sims", "2", "--steps", "2", "--repeats", "1"], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path)
    assert hammer.returncode != 0 and "no batched port yet" in hammer.stderr and "Traceback" not in hammer.stderr
