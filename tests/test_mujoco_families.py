"""The MuJoCo locomotion families: registration, task protocol, rewards against their definitions,
RandParams model rescaling, blow-up reporting, and the Gymnasium / SB3 / sampler integrations."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from metarl import Task
from metarl.batched import GenericBatchedEnv, make_batched_env
from metarl.envs.locomotion import RAND_PARAMS
from metarl.envs import MUJOCO_FAMILY_IDS
from metarl.envs.mujoco_batched import MujocoBatchedEnv

FAMILY_IDS = list(MUJOCO_FAMILY_IDS)
RAND_PARAMS_IDS = ["metarl/HopperRandParams-v0", "metarl/Walker2dRandParams-v0"]


@pytest.fixture(autouse=True)
def _mujoco_log_in_tmp(tmp_path, monkeypatch):
    # MuJoCo appends its warnings (deprecated XML attributes, blow-ups) to ./MUJOCO_LOG.TXT.
    monkeypatch.chdir(tmp_path)


def make(env_id: str, **kwargs):
    return gym.make(env_id, **kwargs)


@pytest.mark.parametrize("env_id", FAMILY_IDS)
def test_registered_with_horizon_200_and_overridable(env_id):
    env = make(env_id)
    assert env.spec.max_episode_steps == 200
    env.close()
    env = make(env_id, max_episode_steps=100)
    env.unwrapped.set_task(env.unwrapped.sample_tasks(1, np.random.default_rng(0))[0])
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    for t in range(100):
        _, _, terminated, truncated, _ = env.step(zero)
        if terminated:
            break
    assert terminated or (truncated and t == 99)
    env.close()


@pytest.mark.parametrize("env_id", FAMILY_IDS)
def test_check_env_on_default_and_sampled_tasks(env_id):
    env = make(env_id)
    family = env.unwrapped
    for task in [family.get_task(), *family.sample_tasks(1, np.random.default_rng(1))]:
        family.set_task(task)
        assert family.get_task() == task
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unbounded Box observations
            check_env(family, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", FAMILY_IDS)
def test_task_sampling_uses_only_the_given_rng(env_id):
    family = make(env_id).unwrapped
    global_state = np.random.get_state()[1].copy()
    first = family.sample_tasks(4, np.random.default_rng(7))
    again = family.sample_tasks(4, np.random.default_rng(7))
    other = family.sample_tasks(4, np.random.default_rng(8))
    assert first == again
    assert np.array_equal(np.random.get_state()[1], global_state)
    if "Dir" not in env_id:  # +-1 draws of two generators may coincide
        assert first != other
    for task in first:
        assert Task.from_json(task.to_json()) == task
        family.validate_task(task)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        family.sample_tasks(2, rng=7)


@pytest.mark.parametrize("env_id, bad_task, message", [
    ("metarl/HalfCheetahVel-v0", Task.create("HalfCheetahVel", velocity=2.5), r"in \[0.0, 2.0\]"),
    ("metarl/HalfCheetahDir-v0", Task.create("HalfCheetahDir", direction=0.5), r"one of \[-1.0, 1.0\]"),
    ("metarl/AntVel-v0", Task.create("AntVel", velocity=-0.1), r"in \[0.0, 3.0\]"),
    ("metarl/AntDir-v0", Task.create("AntDir", direction=2.0), r"one of \[-1.0, 1.0\]"),
    ("metarl/AntGoal-v0", Task.create("AntGoal", goal=[0.0, 3.5]), r"in \[-3.0, 3.0\]"),
])
def test_out_of_range_task_raises_naming_the_range(env_id, bad_task, message):
    family = make(env_id).unwrapped
    with pytest.raises(ValueError, match=message):
        family.set_task(bad_task)


@pytest.mark.parametrize("env_id", RAND_PARAMS_IDS)
def test_rand_params_out_of_range_or_misshapen_task_raises(env_id):
    family = make(env_id).unwrapped
    params = family.default_task().as_dict()
    params["body_mass_log_scale"] = params["body_mass_log_scale"] + 3.5
    with pytest.raises(ValueError, match=r"in \[-3.0, 3.0\]"):
        family.set_task(Task.create(family.family_name, **params))
    params = family.default_task().as_dict()
    params["dof_damping_log_scale"] = params["dof_damping_log_scale"][:-1]
    with pytest.raises(ValueError, match="shape"):
        family.set_task(Task.create(family.family_name, **params))


def test_velocity_range_is_a_kwarg():
    family = make("metarl/HalfCheetahVel-v0", velocity_high=3.0).unwrapped
    velocities = [t["velocity"] for t in family.sample_tasks(200, np.random.default_rng(0))]
    assert 2.0 < max(velocities) <= 3.0 and min(velocities) >= 0.0
    family.set_task(Task.create("HalfCheetahVel", velocity=2.9))
    with pytest.raises(ValueError, match="velocity range"):
        make("metarl/HalfCheetahVel-v0", velocity_low=1.0, velocity_high=1.0)
    with pytest.raises(TypeError, match="forward_reward_weight"):
        make("metarl/HalfCheetahVel-v0", forward_reward_weight=2.0)


def _step_and_reference(env_id, task, action, seed=3, warmup=5):
    """Step the family once after ``warmup`` steps; return (reward, info, quantities for the definition)."""
    env = make(env_id)
    family = env.unwrapped
    family.set_task(task)
    family.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(warmup):
        family.step(rng.uniform(-1, 1, size=family.action_space.shape))
    torso = family.model.body("torso").id
    before = dict(qpos=family.data.qpos.copy(), xpos=family.data.xpos[torso].copy())
    _, reward, terminated, truncated, info = family.step(action)
    after = dict(qpos=family.data.qpos.copy(), xpos=family.data.xpos[torso].copy(),
                 cfrc_ext=family.data.cfrc_ext.copy())
    return reward, terminated, before, after, family.dt


@pytest.mark.parametrize("velocity", [0.5, 1.7])
def test_half_cheetah_vel_reward_definition(velocity):
    action = np.array([1.5, -0.3, 0.2, -2.0, 0.9, 0.1])  # partly outside [-1, 1]: the cost is on the clipped action
    reward, _, before, after, dt = _step_and_reference(
        "metarl/HalfCheetahVel-v0", Task.create("HalfCheetahVel", velocity=velocity), action)
    v = (after["qpos"][0] - before["qpos"][0]) / dt
    expected = -abs(v - velocity) - 0.05 * np.sum(np.clip(action, -1, 1) ** 2)
    assert reward == pytest.approx(expected, abs=1e-10)


def _rllab_body_comvels(model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    """rllab's ``MjModel._compute_subtree``: each body's velocity times its mass, summed up the tree."""
    vel = np.zeros((model.nbody, 6))
    for i in range(model.nbody):
        mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_BODY, i, vel[i], 0)
    mass = model.body_mass.copy()
    momenta = vel[:, 3:] * mass[:, None]
    for i in range(model.nbody - 1, 0, -1):
        momenta[model.body_parentid[i]] += momenta[i]
        mass[model.body_parentid[i]] += mass[i]
    return momenta / mass[:, None]


def test_original_cheetah_velocity_is_the_whole_body_center_of_mass_velocity():
    # docs/mujoco_families.md: rllab's get_body_comvel("torso") is
    # MuJoCo's subtree_linvel of the torso, and it differs from v5's x_velocity while the legs swing
    env = make("metarl/HalfCheetahVel-v0", frame_skip=1)
    env.reset(seed=0)
    model, data = env.unwrapped.model, env.unwrapped.data
    torso = model.body("torso").id
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(30):
        _, _, _, _, info = env.step(rng.uniform(-1, 1, 6))
        mujoco.mj_forward(model, data)
        mujoco.mj_subtreeVel(model, data)
        np.testing.assert_allclose(data.subtree_linvel[torso], _rllab_body_comvels(model, data)[torso], atol=1e-10)
        gaps.append(abs(data.subtree_linvel[torso, 0] - info["x_velocity"]))
    assert max(gaps) > 1e-3


@pytest.mark.parametrize("direction", [-1.0, 1.0])
def test_half_cheetah_dir_reward_definition(direction):
    action = np.array([0.5, -0.3, 0.2, -0.7, 0.9, 0.1])
    reward, _, before, after, dt = _step_and_reference(
        "metarl/HalfCheetahDir-v0", Task.create("HalfCheetahDir", direction=direction), action)
    v = (after["qpos"][0] - before["qpos"][0]) / dt
    assert reward == pytest.approx(direction * v - 0.05 * np.sum(action**2), abs=1e-10)


def _ant_costs(action, cfrc_ext):
    return 0.005 * np.sum(action**2) + 0.0005 * np.sum(np.clip(cfrc_ext, -1, 1) ** 2)


ANT_ACTION = np.array([0.5, -0.3, 0.2, -0.7, 0.9, 0.1, -1.0, 0.4])


def test_ant_vel_reward_definition():
    reward, _, before, after, dt = _step_and_reference("metarl/AntVel-v0", Task.create("AntVel", velocity=1.2),
                                                       ANT_ACTION)
    v = (after["xpos"][0] - before["xpos"][0]) / dt
    expected = -abs(v - 1.2) + 1.0 - _ant_costs(ANT_ACTION, after["cfrc_ext"]) + 0.05
    assert reward == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("direction", [-1.0, 1.0])
def test_ant_dir_reward_definition(direction):
    reward, _, before, after, dt = _step_and_reference(
        "metarl/AntDir-v0", Task.create("AntDir", direction=direction), ANT_ACTION)
    v = (after["xpos"][0] - before["xpos"][0]) / dt
    expected = direction * v - _ant_costs(ANT_ACTION, after["cfrc_ext"]) + 0.05
    assert reward == pytest.approx(expected, abs=1e-10)


def test_ant_goal_reward_definition_and_observation_has_position():
    goal = np.array([2.0, -1.5])
    reward, _, _, after, _ = _step_and_reference("metarl/AntGoal-v0", Task.create("AntGoal", goal=goal), ANT_ACTION)
    expected = -np.sum(np.abs(after["qpos"][:2] - goal)) + 4.0 - _ant_costs(ANT_ACTION, after["cfrc_ext"]) + 0.05
    assert reward == pytest.approx(expected, abs=1e-10)
    family = make("metarl/AntGoal-v0").unwrapped
    obs, _ = family.reset(seed=0)
    np.testing.assert_array_equal(obs[:2], family.data.qpos[:2])


def test_ant_terminates_when_torso_leaves_healthy_height():
    family = make("metarl/AntVel-v0").unwrapped
    family.reset(seed=0)
    qpos = family.data.qpos.copy()
    qpos[2] = 1.5  # far above 1.0: still above after one step
    family.set_state(qpos, family.data.qvel.copy())
    _, reward, terminated, truncated, info = family.step(np.zeros(8))
    assert terminated and not truncated
    assert info["reward_survive"] == 0.05  # paid on the terminal step too, as in MAML-RL


@pytest.mark.parametrize("env_id", RAND_PARAMS_IDS)
def test_rand_params_rescale_from_defaults_without_compounding(env_id):
    family = make(env_id).unwrapped
    defaults = {f: getattr(family.model, f).copy() for f in RAND_PARAMS}
    first, second = family.sample_tasks(2, np.random.default_rng(0))
    family.set_task(first)
    snapshot = {f: getattr(family.model, f).copy() for f in [*RAND_PARAMS, "body_subtreemass", "dof_invweight0"]}
    bases = dict(body_mass=1.5, body_inertia=1.5, dof_damping=1.3, geom_friction=1.5)
    for field in RAND_PARAMS:
        expected = defaults[field] * bases[field] ** first[f"{field}_log_scale"]
        np.testing.assert_allclose(getattr(family.model, field), expected, rtol=1e-12)
    assert not np.allclose(family.model.body_mass[1:], defaults["body_mass"][1:])
    family.set_task(second)
    family.set_task(first)
    for field, value in snapshot.items():
        np.testing.assert_array_equal(getattr(family.model, field), value, err_msg=field)
    family.set_task(family.default_task())
    for field in RAND_PARAMS:
        np.testing.assert_array_equal(getattr(family.model, field), defaults[field])


@pytest.mark.parametrize("env_id", RAND_PARAMS_IDS)
def test_rand_params_tasks_change_the_dynamics(env_id):
    family = make(env_id).unwrapped
    actions = np.random.default_rng(0).uniform(-1, 1, size=(10, *family.action_space.shape))
    finals = []
    for task in family.sample_tasks(2, np.random.default_rng(0)):
        family.set_task(task)
        family.reset(seed=0)
        for a in actions:
            obs, *_ = family.step(a)
        finals.append(obs)
    assert np.abs(finals[0] - finals[1]).max() > 1e-3


def test_walker_uses_rand_param_envs_frame_skip():
    assert make("metarl/Walker2dRandParams-v0").unwrapped.dt == pytest.approx(5 * 0.002)
    assert make("metarl/HopperRandParams-v0").unwrapped.dt == pytest.approx(4 * 0.002)


def test_cheetah_takes_the_original_time_step_as_a_kwarg():
    # v5's cheetah steps 5 physics steps (dt 0.05); MAML-RL's rllab env had no frame skip (dt 0.01).
    assert make("metarl/HalfCheetahDir-v0").unwrapped.dt == pytest.approx(0.05)
    env = make("metarl/HalfCheetahVel-v0", frame_skip=1)
    assert env.unwrapped.dt == pytest.approx(0.01)
    env.reset(seed=0)
    x0 = env.unwrapped.data.qpos[0]
    _, _, _, _, info = env.step(np.zeros(6, dtype=np.float32))
    assert info["x_velocity"] == pytest.approx((env.unwrapped.data.qpos[0] - x0) / 0.01)


@pytest.mark.parametrize("env_id", ["metarl/HalfCheetahVel-v0", "metarl/HalfCheetahDir-v0"])
def test_cheetah_takes_the_original_observation_and_reset_noise_as_kwargs(env_id):
    # rllab's cheetah observation: qpos[1:], qvel, get_body_com("torso") = the torso's subtree center of
    # mass (the whole robot's), as MuJoCo left it after the step; its reset: 0.01 N(0, 1) on qpos,
    # 0.1 N(0, 1) on qvel.
    env = make(env_id, include_center_of_mass_in_observation=True, reset_noise="maml-rl")
    family = env.unwrapped
    assert env.observation_space.shape == (20,)
    check_env(family, skip_render_check=True)
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(5)  # gymnasium seeds its np_random with default_rng(seed)
    qpos = family.init_qpos + 0.01 * rng.standard_normal(family.model.nq)
    qvel = family.init_qvel + 0.1 * rng.standard_normal(family.model.nv)
    np.testing.assert_allclose(family.data.qpos, qpos, atol=1e-12)
    np.testing.assert_allclose(family.data.qvel, qvel, atol=1e-12)
    torso = family.model.body("torso").id
    for _ in range(5):
        obs, *_ = env.step(np.full(6, 0.5, dtype=np.float32))
        np.testing.assert_array_equal(obs[:17], np.concatenate([family.data.qpos[1:], family.data.qvel]))
        np.testing.assert_array_equal(obs[17:], family.data.subtree_com[torso])
    com = (family.model.body_mass[:, None] * family.data.xipos).sum(0) / family.model.body_mass.sum()
    assert obs[17] != pytest.approx(family.data.qpos[0], abs=1e-3)  # not the torso's own x
    assert np.abs(obs[17:] - com).max() < 0.05  # the robot's center of mass (one physics step stale)
    default = make(env_id)
    assert default.observation_space.shape == (17,)
    default.reset(seed=5)
    assert np.abs(default.unwrapped.data.qpos - family.init_qpos).max() > 0.05  # v5's U[-0.1, 0.1]
    clone = pickle.loads(pickle.dumps(family))
    assert clone.observation_space.shape == (20,) and clone._maml_rl_reset
    with pytest.raises(ValueError, match="reset_noise must be one of"):
        make(env_id, reset_noise="rllab")
    with pytest.raises(ValueError, match="drop reset_noise_scale"):
        make(env_id, reset_noise="maml-rl", reset_noise_scale=0.2)
    with pytest.raises(TypeError, match="must be True or False"):
        make(env_id, include_center_of_mass_in_observation="yes")
    with pytest.raises(ValueError, match="excludes the root's x"):
        make(env_id, include_center_of_mass_in_observation=True, exclude_current_positions_from_observation=False)


@pytest.mark.parametrize("env_id", FAMILY_IDS)
@pytest.mark.parametrize("frame_skip", [0, -1, 1.5, True])
def test_bad_frame_skip_raises_naming_it(env_id, frame_skip):
    with pytest.raises(ValueError, match="frame_skip (must be a positive integer|of .* must be a number)"):
        make(env_id, frame_skip=frame_skip)


@pytest.mark.parametrize("env_id", ["metarl/HalfCheetahVel-v0", "metarl/AntGoal-v0", "metarl/HopperRandParams-v0"])
def test_numerical_blow_up_is_truncated_and_reported(env_id):
    env = make(env_id)
    family = env.unwrapped
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    _, _, _, truncated, info = env.step(zero)
    assert not truncated and info["mujoco_instability"] is False
    family.set_state(family.data.qpos.copy(), family.data.qvel + 1e9)  # QACC explodes on the next step
    _, _, terminated, truncated, info = env.step(zero)
    assert truncated and not terminated and info["mujoco_instability"] is True
    assert family.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number > 0  # MuJoCo reset the simulation
    env.reset(seed=1)
    _, _, _, truncated, info = env.step(zero)
    assert not truncated and info["mujoco_instability"] is False
    env.close()


@pytest.mark.parametrize("env_id", ["metarl/AntGoal-v0", "metarl/Walker2dRandParams-v0"])
def test_pickle_keeps_settings_and_task(env_id):
    family = make(env_id).unwrapped
    task = family.sample_tasks(1, np.random.default_rng(3))[0]
    family.set_task(task)
    clone = pickle.loads(pickle.dumps(family))
    assert clone.get_task() == task
    assert clone.observation_space == family.observation_space and clone.dt == family.dt
    if family._task_changes_model:
        np.testing.assert_array_equal(clone.model.body_mass, family.model.body_mass)


@pytest.mark.parametrize("env_id", FAMILY_IDS)
def test_generic_and_fast_batched_paths(env_id):
    tasks = make(env_id).unwrapped.sample_tasks(2, np.random.default_rng(0))
    env_fn = lambda: make(env_id)  # noqa: E731
    fast = make_batched_env(env_fn, tasks, 2)
    generic = make_batched_env(env_fn, tasks, 2, fast=False)
    assert isinstance(fast, MujocoBatchedEnv) and isinstance(generic, GenericBatchedEnv)
    seeds = np.arange(4)
    np.testing.assert_allclose(fast.reset(seeds), generic.reset(seeds), atol=1e-6)
    actions = np.random.default_rng(1).uniform(-1, 1, size=(4, *fast.single_action_space.shape))
    obs_f, rew_f, term_f, _, _ = fast.step(actions)
    obs_g, rew_g, term_g, _, _ = generic.step(actions)
    np.testing.assert_allclose(obs_f, obs_g, atol=1e-6)
    np.testing.assert_allclose(rew_f, rew_g, atol=1e-6)
    np.testing.assert_array_equal(term_f, term_g)
    fast.close()
    generic.close()


@pytest.mark.parametrize("env_id", ["metarl/HalfCheetahDir-v0", "metarl/Walker2dRandParams-v0"])
def test_make_vec(env_id):
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync")
    tasks = envs.unwrapped.envs[0].unwrapped.sample_tasks(2, np.random.default_rng(0))
    for env, task in zip(envs.unwrapped.envs, tasks):
        env.unwrapped.set_task(task)
    assert list(envs.call("get_task")) == tasks
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, *envs.single_observation_space.shape)
    for _ in range(3):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert reward.shape == (2,) and "mujoco_instability" in info
    envs.close()


@pytest.mark.parametrize("env_id", ["metarl/HalfCheetahVel-v0", "metarl/HopperRandParams-v0"])
def test_stable_baselines3_ppo_runs_on_a_fixed_task(env_id):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    env = make(env_id)
    env.unwrapped.set_task(env.unwrapped.sample_tasks(1, np.random.default_rng(0))[0])
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu",
                policy_kwargs=dict(net_arch=[16]))
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action)
    env.close()
