"""The batched MuJoCo backend equals the single Gymnasium env: same observations, rewards,
terminations and blow-up reports for the same actions and reset seeds, for every family."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from metarl.envs import MUJOCO_FAMILY_IDS
from metarl.envs.mujoco_batched import MujocoBatchedEnv
from tests.conftest import load_script

FAMILY_IDS = list(MUJOCO_FAMILY_IDS)


@pytest.fixture(autouse=True)
def _mujoco_log_in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo appends its warnings to ./MUJOCO_LOG.TXT


def rollout_single(family, tasks, episodes_per_task, seeds, actions, perturb=None):
    """Reference: the single env, simulation by simulation, stepped through every action."""
    num_envs, horizon = len(seeds), len(actions)
    obs = np.zeros((horizon + 1, num_envs, *family.observation_space.shape))
    rewards = np.zeros((horizon, num_envs))
    terminated = np.zeros((horizon, num_envs), dtype=bool)
    truncated = np.zeros((horizon, num_envs), dtype=bool)
    for i in range(num_envs):
        family.set_task(tasks[i // episodes_per_task])
        obs[0, i], _ = family.reset(seed=int(seeds[i]))
        for t in range(horizon):
            if perturb is not None and perturb[0] == (t, i):
                family.set_state(*perturb[1](family.data.qpos.copy(), family.data.qvel.copy()))
            obs[t + 1, i], rewards[t, i], terminated[t, i], truncated[t, i], info = family.step(actions[t, i])
            assert info["mujoco_instability"] == truncated[t, i]
    return obs, rewards, terminated, truncated


def rollout_batched(backend, seeds, actions, perturb=None):
    num_envs, horizon = len(seeds), len(actions)
    obs = np.zeros((horizon + 1, num_envs, *backend.single_observation_space.shape))
    rewards = np.zeros((horizon, num_envs))
    terminated = np.zeros((horizon, num_envs), dtype=bool)
    truncated = np.zeros((horizon, num_envs), dtype=bool)
    obs[0] = backend.reset(seeds)
    for t in range(horizon):
        if perturb is not None and perturb[0][0] == t:
            i = perturb[0][1]
            backend.set_state(i, *perturb[1](*backend.get_state(i)))
        obs[t + 1], rewards[t], terminated[t], truncated[t], info = backend.step(actions[t])
        np.testing.assert_array_equal(info["mujoco_instability"], truncated[t])
    return obs, rewards, terminated, truncated


def assert_same_rollouts(batched, single):
    for name, b, s in zip(["observations", "rewards", "terminated", "truncated"], batched, single):
        if b.dtype == bool:
            np.testing.assert_array_equal(b, s, err_msg=name)
        else:
            np.testing.assert_allclose(b, s, rtol=0, atol=1e-6, err_msg=name)


def random_actions(family, horizon, num_envs, seed=0):
    # Partly outside the action bounds (the cheetahs' cost clips, the physics clamps) and float32,
    # as a torch policy gives them.
    low, high = family.action_space.low, family.action_space.high
    rng = np.random.default_rng(seed)
    return rng.uniform(1.3 * low, 1.3 * high, size=(horizon, num_envs, *low.shape)).astype(np.float32)


CASES = [(env_id, {}) for env_id in FAMILY_IDS] + [
    # Ant rarely falls under 60 random steps; a narrower healthy range exercises its termination.
    ("metarl/AntDir-v0", dict(healthy_z_range=(0.45, 1.0))),
    ("metarl/HopperRandParams-v0", dict(exclude_current_positions_from_observation=False)),
    ("metarl/HalfCheetahDir-v0", dict(frame_skip=1)),  # the original MAML-RL time step
    # the original's observation (with the center of mass) and reset noise
    ("metarl/HalfCheetahVel-v0", dict(frame_skip=1, include_center_of_mass_in_observation=True,
                                      reset_noise="maml-rl")),
]


@pytest.mark.parametrize("env_id, kwargs", CASES, ids=[f"{e.split('/')[1]}-{sorted(k)}" for e, k in CASES])
def test_batched_equals_single_env(env_id, kwargs):
    family = gym.make(env_id, **kwargs).unwrapped
    tasks = family.sample_tasks(2, np.random.default_rng(0))
    episodes_per_task, horizon = 2, 60
    seeds = np.array([11, 12, 13, 2**31 - 2])
    actions = random_actions(family, horizon, len(seeds))
    backend = family.batched(tasks, episodes_per_task)
    batched = rollout_batched(backend, seeds, actions)
    backend.close()
    single = rollout_single(gym.make(env_id, **kwargs).unwrapped, tasks, episodes_per_task, seeds, actions)
    assert_same_rollouts(batched, single)
    if "Hopper" in env_id or "Walker" in env_id or kwargs.get("healthy_z_range"):
        assert batched[2].any(), "the comparison should include terminations"
    assert not batched[3].any()


def test_thread_count_does_not_change_results():
    family = gym.make("metarl/AntGoal-v0").unwrapped
    tasks = family.sample_tasks(3, np.random.default_rng(0))
    seeds = np.arange(9)
    actions = random_actions(family, 20, 9)
    results = []
    for nthread in (1, 2, 4):
        backend = family.batched(tasks, 3, nthread=nthread)
        assert backend.nthread == nthread
        results.append(rollout_batched(backend, seeds, actions))
        backend.close()
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("env_id", ["metarl/HalfCheetahVel-v0", "metarl/AntVel-v0", "metarl/Walker2dRandParams-v0"])
def test_blow_up_detected_in_batched_path(env_id):
    family = gym.make(env_id).unwrapped
    tasks = family.sample_tasks(2, np.random.default_rng(0))
    seeds = np.array([5, 6, 7, 8])
    actions = random_actions(family, 8, 4)
    blow_up = ((3, 2), lambda qpos, qvel: (qpos, qvel + 1e9))  # simulation 2 before step 3
    backend = family.batched(tasks, 2)
    batched = rollout_batched(backend, seeds, actions, perturb=blow_up)
    single = rollout_single(gym.make(env_id).unwrapped, tasks, 2, seeds, actions, perturb=blow_up)
    assert_same_rollouts(batched, single)
    truncated = batched[3]
    assert truncated[3:, 2].all() and not truncated[:3].any()
    assert not truncated[:, [0, 1, 3]].any()
    backend.reset(seeds)  # a reset clears the report
    _, _, _, truncated, info = backend.step(actions[0])
    assert not truncated.any() and not info["mujoco_instability"].any()
    backend.close()


@pytest.mark.parametrize("env_id", ["metarl/AntGoal-v0", "metarl/HopperRandParams-v0"])
def test_set_tasks_equals_a_fresh_backend(env_id):
    family = gym.make(env_id).unwrapped
    old_tasks = family.sample_tasks(2, np.random.default_rng(0))
    new_tasks = family.sample_tasks(2, np.random.default_rng(1))
    seeds = np.arange(4)
    actions = random_actions(family, 15, 4)
    reused = family.batched(old_tasks, 2)
    rollout_batched(reused, seeds, actions)
    reused.set_tasks(new_tasks)
    assert reused.tasks == new_tasks
    fresh = family.batched(new_tasks, 2)
    assert_same_rollouts(rollout_batched(reused, seeds, actions), rollout_batched(fresh, seeds, actions))
    reused.close()
    fresh.close()


@pytest.mark.parametrize("env_id", ["metarl/HopperRandParams-v0", "metarl/AntVel-v0"])
def test_single_task_backend(env_id):
    family = gym.make(env_id).unwrapped
    tasks = family.sample_tasks(1, np.random.default_rng(4))
    seeds = np.array([3, 4, 5])
    actions = random_actions(family, 20, 3)
    backend = family.batched(tasks, 3)
    batched = rollout_batched(backend, seeds, actions)
    backend.close()
    assert_same_rollouts(batched, rollout_single(gym.make(env_id).unwrapped, tasks, 3, seeds, actions))


def test_backend_is_independent_of_the_env_it_came_from():
    family = gym.make("metarl/HopperRandParams-v0").unwrapped
    tasks = family.sample_tasks(2, np.random.default_rng(0))
    backend = family.batched(tasks, 1)
    seeds = np.array([1, 2])
    actions = random_actions(family, 10, 2)
    expected = rollout_batched(backend, seeds, actions)
    family.set_task(family.sample_tasks(1, np.random.default_rng(5))[0])  # changes family.model
    family.close()
    assert_same_rollouts(rollout_batched(backend, seeds, actions), expected)
    backend.close()


def test_batched_errors_name_the_problem():
    family = gym.make("metarl/HalfCheetahVel-v0").unwrapped
    tasks = family.sample_tasks(2, np.random.default_rng(0))
    backend = family.batched(tasks, 2)
    assert isinstance(backend, MujocoBatchedEnv) and backend.num_envs == 4
    with pytest.raises(RuntimeError, match="reset"):
        backend.step(np.zeros((4, 6)))
    with pytest.raises(ValueError, match="need 4 seeds"):
        backend.reset([1, 2, 3])
    with pytest.raises(ValueError, match="non-negative integers"):
        backend.reset([1, 2, 3, -4])
    backend.reset(np.arange(4))
    with pytest.raises(ValueError, match=r"shape \(4, 6\)"):
        backend.step(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="runs 2 tasks"):
        backend.set_tasks(tasks[:1])
    with pytest.raises(ValueError, match="out of range"):
        backend.set_tasks([tasks[0], type(tasks[0]).create("HalfCheetahVel", velocity=9.0)])
    with pytest.raises(IndexError, match="out of range"):
        backend.get_state(4)
    with pytest.raises(ValueError, match="episodes_per_task"):
        family.batched(tasks, 0)
    backend.close()


def test_benchmark_script_steps_every_method_with_env_kwargs(monkeypatch, tmp_path):
    bench = load_script("benchmark_mujoco")
    out = tmp_path / "bench.json"
    monkeypatch.setattr("sys.argv", ["benchmark_mujoco.py", "--num-sims", "2", "--steps", "5", "--repeats", "1",
                                     "--nthread", "1", "--env-kwargs", "frame_skip=1", "--json", str(out)])
    result = bench.main()
    assert result.env_kwargs == {"frame_skip": 1}
    assert set(result.steps_per_s) == {"batched", "sync_vector", "make_vec", "bare_mj_step"}
    assert all(rate > 0 for rate in result.steps_per_s.values())
    assert result.ratios["batched / sync_vector"] == pytest.approx(
        result.steps_per_s["batched"] / result.steps_per_s["sync_vector"])
    assert out.exists()
