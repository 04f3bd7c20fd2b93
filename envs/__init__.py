"""metarl's task families, registered with Gymnasium under the ``metarl/`` namespace on import.

Entry points are strings, so importing this package does not import MuJoCo; a family's module
loads on its first ``gymnasium.make``.
"""

from __future__ import annotations

import gymnasium as gym

_FAMILIES: dict[str, dict] = {
    "metarl/Navigation2D-v0": dict(entry_point="metarl.envs.navigation:Navigation2DEnv", max_episode_steps=100),
    # The bandit truncates itself after its `n` pulls (a kwarg), so it has no registered time limit.
    "metarl/BernoulliBandit-v0": dict(entry_point="metarl.envs.bandits:BernoulliBanditEnv", max_episode_steps=None),
    "metarl/TabularMDP-v0": dict(entry_point="metarl.envs.tabular:TabularMDPEnv", max_episode_steps=10),
}


def register_families() -> None:
    """Register every metarl family (idempotent)."""
    for env_id, spec in _FAMILIES.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **spec)


register_families()
