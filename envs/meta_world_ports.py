"""Ports of Meta-World's task classes to whole-batch NumPy, for the batched backend (:mod:`metarl.envs.meta_world_batched`).

Each port gives, over all simulations of one Meta-World v3 class, what that class's ``SawyerXYZEnv`` subclass
computes for one: the observed object position and quaternion, and ``evaluate_state``'s reward and success.
They read the body, site and geom poses the backend copies after each step (:class:`Poses`) and the values the
class's own reset leaves (:meth:`_Port.constants`). Meta-World's arithmetic is reproduced, including where its
scalars turn float32 (a float32 gripper effort meeting Python floats); ``tests/test_metaworld.py`` checks every
port against Meta-World's env.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metarl.envs.meta_world_rewards import (add_mixed, gripper_term, hamacher32, hamacher_any, hamacher_product, mixed,
                                         norm, rect_prism_tolerance, tolerance)

__all__ = ["Poses", "PORTS", "PORTED_CLASSES"]

class Poses:
    """Body positions, site positions and geom orientations of one class's simulations (rows of the batch)."""

    def __init__(self, xpos: np.ndarray, xquat: np.ndarray, site_xpos: np.ndarray, site_xmat: np.ndarray,
                 geom_xpos: np.ndarray, geom_xmat: np.ndarray, qpos: np.ndarray, names: dict[str, dict[str, int]]):
        self.xpos, self.xquat, self.site_xpos, self.site_xmat = xpos, xquat, site_xpos, site_xmat
        self.geom_xpos, self.geom_xmat, self.qpos, self._names = geom_xpos, geom_xmat, qpos, names

    def body(self, name: str) -> np.ndarray:
        return self.xpos[:, self._names["body"][name]]

    def body_quat(self, name: str) -> np.ndarray:
        return self.xquat[:, self._names["body"][name]]

    def geom(self, name: str) -> np.ndarray:
        return self.geom_xpos[:, self._names["geom"][name]]

    def joint(self, name: str) -> np.ndarray:
        """The joint's (first) position coordinate ``(N,)``."""
        return self.qpos[:, self._names["joint"][name]]

    def site(self, name: str) -> np.ndarray:
        return self.site_xpos[:, self._names["site"][name]]

    def matrix(self, kind: str, name: str) -> np.ndarray:
        """The rotation matrices ``(N, 9)`` of a geom or site."""
        return (self.geom_xmat if kind == "geom" else self.site_xmat)[:, self._names[kind][name]]

    def tcp_center(self) -> np.ndarray:
        return (self.site("rightEndEffector") + self.site("leftEndEffector")) / 2.0


# ----- ports of Meta-World's task classes -------------------------------------------------------------------
class _Port:
    """One Meta-World task class's observed objects, reward and success over a batch of its simulations.

    ``bodies``, ``sites`` and ``geoms`` name what it reads besides the gripper's; ``constants(env)`` reads, after
    Meta-World's own reset, the per-episode values its reward uses.
    """

    bodies: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    geoms: tuple[str, ...] = ()
    joints: tuple[str, ...] = ()
    #: env attributes (after reset) the reward reads besides the target, initial object, tcp and hand positions
    extra_constants: tuple[str, ...] = ()

    def constants(self, env: Any) -> dict[str, np.ndarray]:
        out = {"target": np.array(env._target_pos, dtype=np.float64),
               "obj_init": np.array(env.obj_init_pos, dtype=np.float64),
               "init_tcp": np.array(env.init_tcp, dtype=np.float64),
               "hand_init": np.array(env.hand_init_pos, dtype=np.float64)}
        return out | {name: np.array(getattr(env, name), dtype=np.float64) for name in self.extra_constants}

    #: where the observed quaternion comes from: ``("geom" | "site", name)`` (Meta-World converts the frame's
    #: rotation matrix with SciPy), ``("body", name)`` (MuJoCo's ``xquat``), or ``None`` (zeros)
    quat_source: tuple[str, str] | None = ("geom", "objGeom")

    #: the observed object position: a body's, site's or geom's frame (``("body", "obj")``), plus an offset
    position_of: tuple[str, str] = ("body", "obj")
    position_offset: tuple[float, float, float] | None = None

    def position(self, poses: Poses) -> np.ndarray:
        """The observed object position ``(N, 3)``."""
        kind, name = self.position_of
        pos = getattr(poses, kind)(name)
        return pos if self.position_offset is None else pos + np.array(self.position_offset)

    def evaluate(self, poses: Poses, obs: np.ndarray, actions: np.ndarray, c: dict[str, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Rewards and success flags ``(N,)`` (Meta-World's ``evaluate_state`` per simulation)."""
        raise NotImplementedError

    @staticmethod
    def held_reward(grasped: np.ndarray, in_f32: np.ndarray, in_place: np.ndarray, lifted: np.ndarray) -> np.ndarray:
        """The reward of the classes that count a lifted object as grasped (peg-insert-side, basketball):
        ``hamacher(grasped, in_place)`` (1 for grasped while lifted), plus ``1 + 5 in_place`` while lifted."""
        grasped, in_f32 = np.where(lifted, 1.0, grasped), in_f32 & ~lifted
        reward = mixed(in_f32, hamacher_any, grasped, in_place)
        return np.where(lifted, reward + (1.0 + 5.0 * in_place), reward)

    @staticmethod
    def gripper_caging(poses: Poses, actions: np.ndarray, obj: np.ndarray, c: dict[str, np.ndarray], *,
                       obj_radius: float, pad_success_thresh: float, object_reach_radius: float, xz_thresh: float,
                       desired_gripper_effort: float = 1.0, high_density: bool = False,
                       medium_density: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``SawyerXYZEnv._gripper_caging_reward`` over the batch, and where Meta-World computes it in float32.

        Meta-World multiplies its Python-float caging term by the action's float32 gripper effort where the
        gripper cages the object (caging > 0.97) and closes (0 < effort <= desired effort; above it the effort
        is clipped to the Python float, below to Python's 0); NumPy then computes the rest of the reward in
        float32. The returned values hold those float32 results exactly; the mask says where.
        """
        pad_y = np.stack([poses.body("leftpad")[:, 1], poses.body("rightpad")[:, 1]], axis=1)
        pad_to_obj = np.abs(pad_y - obj[:, 1:2])
        pad_to_objinit = np.abs(pad_y - c["obj_init"][:, 1:2])
        margin = np.abs(pad_to_objinit - pad_success_thresh)
        caging_lr = [tolerance(pad_to_obj[:, i], obj_radius, pad_success_thresh, margin[:, i]) for i in range(2)]
        caging_y = hamacher_product(*caging_lr)
        tcp = poses.tcp_center()
        xz = [0, 2]
        xz_margin = norm(c["obj_init"][:, xz] - c["init_tcp"][:, xz]) - xz_thresh
        caging_xz = tolerance(norm(tcp[:, xz] - obj[:, xz]), 0.0, xz_thresh, xz_margin)
        caging = hamacher_product(caging_y, caging_xz)
        effort = actions[:, -1].astype(np.float32)
        caged = caging > 0.97
        in_f32 = caged & (effort > 0) & (effort <= np.float32(desired_gripper_effort))
        # float64 where the gripper term is a Python number: 1 (effort above the desired one) or 0
        out64 = hamacher_product(caging, np.where(caged & (effort > desired_gripper_effort), 1.0, 0.0))
        closed = (np.minimum(np.maximum(np.float32(0), effort), np.float32(desired_gripper_effort))
                  / np.float32(desired_gripper_effort))
        cage32 = caging.astype(np.float32)
        out32 = (cage32 * closed) / ((cage32 + closed) - cage32 * closed)
        if high_density:
            out64 = (out64 + caging) / 2
            out32 = (out32 + cage32) / np.float32(2)
        if medium_density:
            reach_margin = np.abs(norm(c["obj_init"] - c["init_tcp"]) - object_reach_radius)
            reach = tolerance(norm(obj - tcp), 0.0, object_reach_radius, reach_margin)
            out64 = (out64 + reach) / 2
            out32 = (out32 + reach.astype(np.float32)) / np.float32(2)
        return np.where(in_f32, out32.astype(np.float64), out64), in_f32


class _Reach(_Port):
    """``reach-v3``: the gripper to a goal (reward version v2)."""


    def evaluate(self, poses, obs, actions, c):
        tcp_to_target = norm(poses.tcp_center() - c["target"])
        in_place = tolerance(tcp_to_target, 0.0, 0.05, norm(c["hand_init"] - c["target"]))
        return 10 * in_place, tcp_to_target <= 0.05


class _Push(_Port):
    """``push-v3``: push a puck to a goal on the table (reward version v2)."""

    target_radius = 0.05

    def evaluate(self, poses, obs, actions, c):
        obj, tcp_opened = obs[:, 4:7], obs[:, 3]
        tcp_to_obj = norm(obj - poses.tcp_center())
        target_to_obj = norm(obj - c["target"])
        in_place = tolerance(target_to_obj, 0.0, self.target_radius, norm(c["obj_init"] - c["target"]))
        grasped, in_f32 = self.gripper_caging(poses, actions, obj, c, object_reach_radius=0.01, obj_radius=0.015,
                                              pad_success_thresh=0.05, xz_thresh=0.005, high_density=True)
        near = (tcp_to_obj < 0.02) & (tcp_opened > 0)

        def combine(g: np.ndarray, bonus: np.ndarray) -> np.ndarray:  # in g's precision, as Meta-World's scalars
            reward = 2 * g
            return np.where(near, reward + ((1 + reward) + bonus), reward)

        reward = np.where(in_f32, combine(grasped.astype(np.float32), (5.0 * in_place).astype(np.float32)),
                          combine(grasped, 5.0 * in_place))
        reward = np.where(target_to_obj < self.target_radius, 10.0, reward)
        return reward, target_to_obj <= self.target_radius


class _DoorOpen(_Port):
    """``door-open-v3``: pull the door open by its handle."""

    joints = ("doorjoint",)
    quat_source = ("geom", "handle")
    position_of = ("geom", "handle")

    def evaluate(self, poses, obs, actions, c):
        theta = poses.joint("doorjoint")
        grab = ((np.clip(actions[:, 3].astype(np.float32), -1, 1) + np.float32(1.0)) / np.float32(2.0)).astype(np.float64)
        hand, door = obs[:, :3], obs[:, 4:7] + np.array([-0.05, 0, 0])
        radius = norm(hand[:, :2] - door[:, :2])
        floor = np.where(radius <= 0.12, 0.0, 0.04 * np.log(np.maximum(radius - 0.12, 1e-300)) + 0.4)
        above_floor = np.where(hand[:, 2] >= floor, 1.0, tolerance(floor - hand[:, 2], 0.0, 0.01, floor / 2.0))
        in_place = tolerance(norm(hand - door - np.array([0.05, 0.03, -0.01])), 0.0, 0.12 / 2.0, 0.5)
        ready = hamacher_product(above_floor, in_place)
        opened = 0.2 * (theta < -np.pi / 90.0) + 0.8 * tolerance(np.pi / 2.0 + np.pi / 6 - (-theta), 0.0, 0.5,
                                                                  np.pi / 3.0)
        done = np.abs(obs[:, 4] - c["target"][:, 0]) <= 0.08
        return np.where(done, 10.0, 2.0 * hamacher_product(ready, grab) + 8.0 * opened), done


class _DoorClose(_Port):
    """``door-close-v3``: push the open door shut."""

    quat_source = ("geom", "handle")
    position_of = ("geom", "handle")

    def evaluate(self, poses, obs, actions, c):
        obj = obs[:, 4:7]
        tcp_to_target = norm(poses.tcp_center() - c["target"])
        obj_to_target = norm(obj - c["target"])
        in_place = tolerance(obj_to_target, 0.0, 0.05, norm(c["obj_init"] - c["target"]), "gaussian")
        hand_in_place = tolerance(tcp_to_target, 0.0, 0.25 * 0.05, norm(c["hand_init"] - obj) + 0.1, "gaussian")
        reward = np.where(obj_to_target < 0.05, 10.0, 3 * hand_in_place + 6 * in_place)
        return reward, obj_to_target <= 0.08


class _DrawerClose(_Port):
    """``drawer-close-v3``: push the open drawer shut."""

    quat_source = None
    position_of = ("body", "drawer_link")
    position_offset = [0.0, -0.16, 0.05]

    def evaluate(self, poses, obs, actions, c):
        obj = obs[:, 4:7]
        target_to_obj = norm(obj - c["target"])
        in_place = tolerance(target_to_obj, 0.0, 0.05, np.abs(norm(c["obj_init"] - c["target"]) - 0.05))
        reach = tolerance(norm(obj - poses.tcp_center()), 0.0, 0.005,
                          np.abs(norm(c["obj_init"] - c["init_tcp"]) - 0.005), "gaussian")
        grip, in_f32 = gripper_term(actions)
        reward = np.where(in_f32, hamacher32(hamacher32(reach, grip), in_place),
                          hamacher_product(hamacher_product(reach, grip), in_place))
        closed = target_to_obj <= 0.05 + 0.015
        times_ten = np.where(in_f32, (reward.astype(np.float32) * np.float32(10)).astype(np.float64), reward * 10)
        reward = np.where(closed, 10.0, times_ten)
        return reward, closed


class _DrawerOpen(_Port):
    """``drawer-open-v3``: pull the drawer open by its handle."""

    extra_constants = ("maxDist",)

    quat_source = ("body", "drawer_link")
    position_of = ("body", "drawer_link")
    position_offset = [0.0, -0.16, 0.0]

    def evaluate(self, poses, obs, actions, c):
        gripper, handle = obs[:, :3], obs[:, 4:7]
        max_dist = c["maxDist"]
        handle_error = norm(handle - c["target"])
        opening = tolerance(handle_error, 0.0, 0.02, max_dist)
        handle_init = c["target"] + np.stack([np.zeros_like(max_dist), max_dist, np.zeros_like(max_dist)], axis=1)
        scale = np.array([3.0, 3.0, 1.0])
        caging = tolerance(norm((handle - gripper) * scale), 0.0, 0.01, norm((handle_init - c["init_tcp"]) * scale))
        return (caging + opening) * 5.0, handle_error <= 0.03


class _WindowOpen(_Port):
    """``window-open-v3``: slide the window open by its handle."""

    extra_constants = ("window_handle_pos_init",)

    quat_source = None
    position_of = ("site", "handleOpenStart")

    def evaluate(self, poses, obs, actions, c):
        obj = poses.site("handleOpenStart")
        target_to_obj = np.abs(obj[:, 0] - c["target"][:, 0])
        target_to_obj_init = np.abs(c["obj_init"][:, 0] - c["target"][:, 0])
        in_place = tolerance(target_to_obj, 0.0, 0.05, np.abs(target_to_obj_init - 0.05))
        reach = tolerance(norm(obj - poses.tcp_center()), 0.0, 0.02,
                          np.abs(norm(c["window_handle_pos_init"] - c["init_tcp"]) - 0.02))
        return 10 * hamacher_product(reach, in_place), target_to_obj <= 0.05


class _ButtonPressTopdown(_Port):
    """``button-press-topdown-v3``: press a button down from above."""

    extra_constants = ("_obj_to_target_init",)

    quat_source = ("body", "button")
    position_of = ("body", "button")
    position_offset = [0.0, 0.0, 0.193]

    def evaluate(self, poses, obs, actions, c):
        obj = obs[:, 4:7]
        tcp_to_obj = norm(obj - poses.tcp_center())
        obj_to_target = np.abs(c["target"][:, 2] - obj[:, 2])
        near = tolerance(tcp_to_obj, 0.0, 0.01, norm(obj - c["init_tcp"]))
        pressed = tolerance(obj_to_target, 0.0, 0.005, c["_obj_to_target_init"])
        reward = 5 * hamacher_product(1 - obs[:, 3], near)
        return np.where(tcp_to_obj <= 0.03, reward + 5 * pressed, reward), obj_to_target <= 0.024


class _LeverPull(_Port):
    """``lever-pull-v3``: lift a lever up by a quarter turn."""

    joints = ("LeverAxis",)
    extra_constants = ("_lever_pos_init",)

    position_of = ("site", "leverStart")

    def evaluate(self, poses, obs, actions, c):
        gripper, lever = obs[:, :3], obs[:, 4:7]
        scale, offset = np.array([4.0, 1.0, 4.0]), np.array([0.0, 0.055, 0.07])
        ready = tolerance(norm((gripper + offset - lever) * scale), 0.0, 0.02,
                          norm((c["init_tcp"] + offset - c["_lever_pos_init"]) * scale))
        lever_error = np.abs(-poses.joint("LeverAxis") - np.pi / 2.0)
        in_place = tolerance(norm(lever - c["target"]), 0.0, 0.04, norm(c["_lever_pos_init"] - c["target"]))
        return 10.0 * hamacher_product(ready, in_place), lever_error <= np.pi / 24


def _xz_caging(poses: Poses, obj: np.ndarray, c: dict[str, np.ndarray], obj_radius: float, pad_margin: float,
               xz_margin: float, grip_margin: float | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The caging terms pick-place, sweep and sweep-into override the base class's with: the pads' y distances to
    the object (margins from the pads' positions now: the "initial" pads those classes read are live views of the
    simulation), the gripper's x-z distance to it. Returns ``(y caging, x-z caging, y gripping or None)``."""
    left, right = poses.body("leftpad"), poses.body("rightpad")
    left_delta, right_delta = left[:, 1] - obj[:, 1], obj[:, 1] - right[:, 1]
    right_margin = np.abs(np.abs(obj[:, 1] - right[:, 1]) - pad_margin)
    left_margin = np.abs(np.abs(obj[:, 1] - left[:, 1]) - pad_margin)
    y_caging = hamacher_product(tolerance(right_delta, obj_radius, pad_margin, right_margin),
                                tolerance(left_delta, obj_radius, pad_margin, left_margin))  # symmetric, exactly
    y_gripping = None if grip_margin is None else hamacher_product(
        tolerance(right_delta, obj_radius, grip_margin, right_margin), tolerance(left_delta, obj_radius, grip_margin, left_margin))
    xz = [0, 2]
    margin = norm(c["obj_init"][:, xz] - c["init_tcp"][:, xz]) - xz_margin
    xz_caging = tolerance(norm(poses.tcp_center()[:, xz] - obj[:, xz]), 0.0, xz_margin, margin)
    return y_caging, xz_caging, y_gripping


class _PickPlace(_Port):
    """``pick-place-v3``: pick a puck up and place it at a goal in the air."""


    def evaluate(self, poses, obs, actions, c):
        obj, tcp_opened = obs[:, 4:7], obs[:, 3]
        obj_to_target = norm(obj - c["target"])
        tcp_to_obj = norm(obj - poses.tcp_center())
        in_place = tolerance(obj_to_target, 0.0, 0.05, norm(c["obj_init"] - c["target"]))
        y_caging, xz_caging, _ = _xz_caging(poses, obj, c, 0.015, 0.05, 0.005)
        caging = hamacher_product(y_caging, xz_caging)
        grip, grip_f32 = gripper_term(actions)
        gripping = np.where(caging > 0.97, grip, 0.0)
        f32 = grip_f32 & (caging > 0.97)
        grasped = mixed(f32, lambda g, k: (g + k) / 2, mixed(f32, hamacher_any, caging, gripping), caging)
        reward = mixed(f32, hamacher_any, grasped, in_place)
        lifted = (tcp_to_obj < 0.02) & (tcp_opened > 0) & (obj[:, 2] - 0.01 > c["obj_init"][:, 2])
        reward = np.where(lifted, mixed(f32, add_mixed, reward, 1.0 + 5.0 * in_place), reward)
        return np.where(obj_to_target < 0.05, 10.0, reward), obj_to_target <= 0.07


class _PegInsertSide(_Port):
    """``peg-insert-side-v3``: pick a peg up and insert it sideways into a hole."""

    sites = ("pegHead", "bottom_right_corner_collision_box_1", "top_left_corner_collision_box_1",
             "bottom_right_corner_collision_box_2", "top_left_corner_collision_box_2")
    extra_constants = ("peg_head_pos_init",)

    quat_source = ("site", "pegGrasp")
    position_of = ("site", "pegGrasp")

    def evaluate(self, poses, obs, actions, c):
        obj, tcp_opened, head = obs[:, 4:7], obs[:, 3], poses.site("pegHead")
        tcp_to_obj = norm(obj - poses.tcp_center())
        scale = np.array([1.0, 2.0, 2.0])
        obj_to_target = norm((head - c["target"]) * scale)
        in_place = tolerance(obj_to_target, 0.0, 0.07, norm((c["peg_head_pos_init"] - c["target"]) * scale))
        box_1 = rect_prism_tolerance(head, poses.site("bottom_right_corner_collision_box_1"),
                                     poses.site("top_left_corner_collision_box_1"))
        box_2 = rect_prism_tolerance(head, poses.site("bottom_right_corner_collision_box_2"),
                                     poses.site("top_left_corner_collision_box_2"))
        in_place = hamacher_product(in_place, hamacher_product(box_2, box_1))
        grasped, f32 = self.gripper_caging(poses, actions, obj, c, object_reach_radius=0.01, obj_radius=0.0075,
                                           pad_success_thresh=0.03, xz_thresh=0.005, high_density=True)
        reward = self.held_reward(grasped, f32, in_place, (tcp_to_obj < 0.08) & (tcp_opened > 0) &
                                  (obj[:, 2] - 0.01 > c["obj_init"][:, 2]))
        return np.where(obj_to_target <= 0.07, 10.0, reward), obj_to_target <= 0.07


class _Sweep(_Port):
    """``sweep-v3``: sweep a puck off the table's edge (``sweep-into-v3``: into a hole in the table)."""

    grip_margin, xz_margin, target_z_from_obj = 0.01, 0.005, False

    quat_source = ("body", "obj")

    def evaluate(self, poses, obs, actions, c):
        obj = obs[:, 4:7]
        target = c["target"].copy()
        if self.target_z_from_obj:
            target[:, 2] = obj[:, 2]
        obj_to_target = norm(obj - target)
        in_place = tolerance(obj_to_target, 0.0, 0.05, norm(c["obj_init"] - target))
        y_caging, xz_caging, y_gripping = _xz_caging(poses, obj, c, 0.02, 0.05, self.xz_margin, 0.02 + self.grip_margin)
        caging = hamacher_product(y_caging, xz_caging)
        grasped = (caging + np.where(caging > 0.95, y_gripping, 0.0)) / 2
        reward = 2 * grasped + 6 * hamacher_product(grasped, in_place)
        return np.where(obj_to_target < 0.05, 10.0, reward), obj_to_target <= 0.05


class _SweepInto(_Sweep):
    grip_margin, xz_margin, target_z_from_obj = 0.005, 0.01, True
    quat_source = ("geom", "objGeom")


class _Basketball(_Port):
    """``basketball-v3``: pick a ball up and drop it through the hoop."""

    sites = ("goal",)
    quat_source = ("body", "bsktball")
    position_of = ("body", "bsktball")

    def evaluate(self, poses, obs, actions, c):
        obj, tcp_opened = obs[:, 4:7], obs[:, 3]
        target = poses.site("goal").copy()  # Meta-World's target is a live view of the goal site
        target[:, 2] = 0.3
        scale = np.array([1.0, 1.0, 2.0])
        obj_to_target = norm((obj - target) * scale)
        in_place = tolerance(obj_to_target, 0.0, 0.08, norm((c["obj_init"] - target) * scale))
        tcp_to_obj = norm(obj - poses.tcp_center())
        grasped, f32 = self.gripper_caging(poses, actions, obj, c, object_reach_radius=0.01, obj_radius=0.025,
                                           pad_success_thresh=0.06, xz_thresh=0.005, high_density=True)
        reward = self.held_reward(grasped, f32, in_place, (tcp_to_obj < 0.035) & (tcp_opened > 0) &
                                  (obj[:, 2] - 0.01 > c["obj_init"][:, 2]))
        return np.where(obj_to_target < 0.08, 10.0, reward), obj_to_target <= 0.08


class _ShelfPlace(_Port):
    """``shelf-place-v3``: pick a block up and place it on a shelf."""


    def evaluate(self, poses, obs, actions, c):
        obj, tcp_opened, target = obs[:, 4:7], obs[:, 3], c["target"]
        obj_to_target = norm(obj - target)
        tcp_to_obj = norm(obj - poses.tcp_center())
        in_place = tolerance(obj_to_target, 0.0, 0.05, norm(c["obj_init"] - target))
        grasped, f32 = self.gripper_caging(poses, actions, obj, c, obj_radius=0.02, pad_success_thresh=0.05,
                                           object_reach_radius=0.01, xz_thresh=0.01)
        reward = mixed(f32, hamacher_any, grasped, in_place)
        low, x_near = (0.0 < obj[:, 2]) & (obj[:, 2] < 0.24), (target[:, 0] - 0.15 < obj[:, 0]) & (obj[:, 0] < target[:, 0] + 0.15)
        below = low & x_near & (target[:, 1] - 3 * 0.05 < obj[:, 1]) & (obj[:, 1] < target[:, 1])
        z_scaling = (0.24 - obj[:, 2]) / 0.24
        y_scaling = (obj[:, 1] - (target[:, 1] - 3 * 0.05)) / (3 * 0.05)
        in_place = np.where(below, np.clip(in_place - hamacher_product(y_scaling, z_scaling), 0.0, 1.0), in_place)
        behind = low & x_near & (obj[:, 1] > target[:, 1])
        in_place = np.where(behind, 0.0, in_place)
        lifted = (tcp_to_obj < 0.025) & (tcp_opened > 0) & (obj[:, 2] - 0.01 > c["obj_init"][:, 2])
        # NumPy keeps a float32 reward float32 when the bonus is a Python float, not after the clip's float64
        reward = np.where(lifted, mixed(f32 & ~(below & ~behind), add_mixed, reward, 1.0 + 5.0 * in_place), reward)
        return np.where(obj_to_target < 0.05, 10.0, reward), obj_to_target <= 0.07


#: Meta-World task classes with a batched port
PORTS: dict[str, _Port] = {"reach-v3": _Reach(), "push-v3": _Push(), "door-open-v3": _DoorOpen(),
                           "door-close-v3": _DoorClose(), "drawer-close-v3": _DrawerClose(),
                           "drawer-open-v3": _DrawerOpen(), "window-open-v3": _WindowOpen(),
                           "button-press-topdown-v3": _ButtonPressTopdown(), "lever-pull-v3": _LeverPull(),
                           "pick-place-v3": _PickPlace(), "peg-insert-side-v3": _PegInsertSide(), "sweep-v3": _Sweep(),
                           "sweep-into-v3": _SweepInto(), "basketball-v3": _Basketball(), "shelf-place-v3": _ShelfPlace()}
PORTED_CLASSES: tuple[str, ...] = tuple(PORTS)
