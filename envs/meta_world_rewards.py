"""Meta-World's reward utilities (``metaworld.utils.reward_utils``) over arrays of simulations, with its float32
arithmetic where its scalars turn float32: what the class ports of :mod:`metarl.envs.meta_world_ports` compute
their rewards with."""

from __future__ import annotations

import numpy as np

__all__ = ["tolerance", "gripper_term", "hamacher32", "hamacher_any", "hamacher_product", "mixed", "add_mixed",
           "rect_prism_tolerance", "norm"]

# ----- Meta-World's reward utilities over arrays ------------------------------------------------------------
def tolerance(x: np.ndarray, lower: float, upper: float, margin: np.ndarray | float,
              sigmoid: str = "long_tail") -> np.ndarray:
    """``reward_utils.tolerance(x, bounds=(lower, upper), margin, sigmoid)`` (value 0.1 at the margin) elementwise,
    with a margin per element (0 where Meta-World's margin is 0: 1 in bounds, else 0); ``"long_tail"`` or
    ``"gaussian"``."""
    x, margin = np.asarray(x, dtype=np.float64), np.asarray(margin, dtype=np.float64)
    in_bounds = (lower <= x) & (x <= upper)
    safe = np.where(margin == 0, 1.0, margin)
    d = np.where(x < lower, lower - x, x - upper) / safe
    if sigmoid == "long_tail":
        scale = np.sqrt(1 / 0.1 - 1)
        value = 1 / ((d * scale) ** 2 + 1)
    elif sigmoid == "gaussian":
        scale = np.sqrt(-2 * np.log(0.1))
        value = np.exp(-0.5 * (d * scale) ** 2)
    else:
        raise ValueError(f"no port of the {sigmoid!r} sigmoid")
    return np.where(margin == 0, np.where(in_bounds, 1.0, 0.0), np.where(in_bounds, 1.0, value))


def gripper_term(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Meta-World's ``min(max(0, action[-1]), 1)``: the value and where it is the action's float32 (0 < a <= 1;
    elsewhere it is Python's 0 or 1, and the products it enters stay in float64)."""
    a = actions[:, -1].astype(np.float32)
    in_f32 = (a > 0) & (a <= 1)
    return np.where(in_f32, a.astype(np.float64), np.where(a > 1, 1.0, 0.0)), in_f32


def hamacher32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`hamacher_product` in float32 (Meta-World's scalars after a float32 gripper term), as float64 values."""
    a, b = np.asarray(a).astype(np.float32), np.asarray(b).astype(np.float32)
    denominator = (a + b) - a * b
    safe = np.where(denominator > 0, denominator, np.float32(1))
    return np.where(denominator > 0, (a * b) / safe, np.float32(0)).astype(np.float64)


def hamacher_any(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`hamacher_product` in the inputs' own precision."""
    denominator = (a + b) - a * b
    return np.where(denominator > 0, (a * b) / np.where(denominator > 0, denominator, 1), 0).astype(a.dtype)


def hamacher_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``reward_utils.hamacher_product`` elementwise: ``a b / (a + b - a b)``, 0 where the denominator is 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = a + b - a * b
    return np.where(denominator > 0, a * b / np.where(denominator > 0, denominator, 1.0), 0.0)


def mixed(f32: np.ndarray, op, *args: np.ndarray) -> np.ndarray:
    """``op(*args)`` in float32 where ``f32`` (Meta-World's scalars were float32 there), else in float64."""
    low = op(*(np.asarray(a).astype(np.float32) for a in args)).astype(np.float64)
    return np.where(f32, low, op(*(np.asarray(a, dtype=np.float64) for a in args)))


def add_mixed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + b


def rect_prism_tolerance(curr: np.ndarray, zero: np.ndarray, one: np.ndarray) -> np.ndarray:
    """``reward_utils.rect_prism_tolerance`` over rows: inside the prism from ``zero`` to ``one`` the product of
    the scaled coordinates, else 1."""
    low, high = np.minimum(zero, one), np.maximum(zero, one)
    inside = np.all((low <= curr) & (curr <= high), axis=1)
    scales = (curr - zero) / np.where(one - zero == 0, 1.0, one - zero)
    return np.where(inside, scales[:, 0] * scales[:, 1] * scales[:, 2], 1.0)


def norm(v: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis, computed as ``np.linalg.norm`` does for one vector."""
    return np.sqrt(np.einsum("...i,...i->...", v, v))


# ----- what the hooks see of a class's simulations after a step --------------------------------------------
