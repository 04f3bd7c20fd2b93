"""metarl's task families, registered with Gymnasium under the ``metarl/`` namespace on import.

Entry points are strings, so importing this package does not import MuJoCo; a family's module
loads on its first ``gymnasium.make``. Every family also takes ``task=`` (``gymnasium.make(id, task=...)``)
and ``gymnasium.make_vec(id, num_envs=N)`` gives :class:`metarl.vector.FamilyVectorEnv` on its fast path.
"""

from __future__ import annotations

import gymnasium as gym

_FAMILIES: dict[str, dict] = {
    "metarl/Navigation2D-v0": dict(entry_point="metarl.envs.navigation:Navigation2DEnv", max_episode_steps=100),
    # PEARL's dense point robot (envs/point_robot.py): random starts and goals in [-1, 1]^2, reward -distance.
    "metarl/PointRobot-v0": dict(entry_point="metarl.envs.point_robot:PointRobotEnv", max_episode_steps=20),
    # PEARL's sparse point robot (envs/point_robot.py): goals on a half circle, reward only near the goal.
    "metarl/SparsePointRobot-v0": dict(entry_point="metarl.envs.point_robot:SparsePointRobotEnv", max_episode_steps=20),
    # MuJoCo locomotion (envs/cheetah.py, ant.py, rand_params.py on envs/locomotion.py; docs/mujoco_families.md); horizon 200 as in the MAML experiments.
    "metarl/HalfCheetahVel-v0": dict(entry_point="metarl.envs.cheetah:HalfCheetahVelEnv", max_episode_steps=200,
                                     kwargs=dict(velocity_low=0.0, velocity_high=2.0, ctrl_cost_weight=0.05)),
    "metarl/HalfCheetahDir-v0": dict(entry_point="metarl.envs.cheetah:HalfCheetahDirEnv", max_episode_steps=200,
                                     kwargs=dict(ctrl_cost_weight=0.05)),
    "metarl/AntVel-v0": dict(entry_point="metarl.envs.ant:AntVelEnv", max_episode_steps=200,
                             kwargs=dict(velocity_low=0.0, velocity_high=3.0, ctrl_cost_weight=0.005,
                                         contact_cost_weight=5e-4, healthy_reward=0.05, healthy_z_range=(0.2, 1.0))),
    "metarl/AntDir-v0": dict(entry_point="metarl.envs.ant:AntDirEnv", max_episode_steps=200,
                             kwargs=dict(ctrl_cost_weight=0.005, contact_cost_weight=5e-4, healthy_reward=0.05,
                                         healthy_z_range=(0.2, 1.0))),
    "metarl/AntGoal-v0": dict(entry_point="metarl.envs.ant:AntGoalEnv", max_episode_steps=200,
                              kwargs=dict(goal_low=-3.0, goal_high=3.0, ctrl_cost_weight=0.005, contact_cost_weight=5e-4,
                                          healthy_reward=0.05, healthy_z_range=(0.2, 1.0),
                                          exclude_current_positions_from_observation=False)),
    "metarl/HopperRandParams-v0": dict(entry_point="metarl.envs.rand_params:HopperRandParamsEnv", max_episode_steps=200,
                                       kwargs=dict(log_scale_limit=3.0, frame_skip=4)),
    "metarl/Walker2dRandParams-v0": dict(entry_point="metarl.envs.rand_params:Walker2dRandParamsEnv",
                                         max_episode_steps=200, kwargs=dict(log_scale_limit=3.0, frame_skip=5)),
    # The bandit truncates itself after its `n` pulls (a kwarg), so it has no registered time limit.
    "metarl/BernoulliBandit-v0": dict(entry_point="metarl.envs.bandits:BernoulliBanditEnv", max_episode_steps=None),
    "metarl/TabularMDP-v0": dict(entry_point="metarl.envs.tabular:TabularMDPEnv", max_episode_steps=10),
    # Meta-World (envs/meta_world.py; the metarl[metaworld] extra): fixed train/test task sets, success rates.
    "metarl/MetaWorldML1-v0": dict(entry_point="metarl.envs.meta_world:MetaWorldML1Env", max_episode_steps=500),
    "metarl/MetaWorldML10-v0": dict(entry_point="metarl.envs.meta_world:MetaWorldML10Env", max_episode_steps=500),
}

#: ids of the families that need an extra (family id -> the extra's name)
EXTRA_FAMILIES: dict[str, str] = {"metarl/MetaWorldML1-v0": "metaworld", "metarl/MetaWorldML10-v0": "metaworld"}

#: ids of the MuJoCo locomotion families
MUJOCO_FAMILY_IDS: tuple[str, ...] = tuple(
    env_id for env_id, spec in _FAMILIES.items()
    if spec["entry_point"].split(":")[0] in ("metarl.envs.cheetah", "metarl.envs.ant", "metarl.envs.rand_params"))


def register_families() -> None:
    """Register every metarl family (idempotent), with :mod:`metarl.vector`'s vector env as its
    ``vector_entry_point`` (``gymnasium.make_vec(id, num_envs=N)`` steps the family's fast path)."""
    from metarl.vector import vector_entry_point

    for env_id, spec in _FAMILIES.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, vector_entry_point=vector_entry_point(env_id), **spec)


register_families()
