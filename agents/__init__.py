"""Meta-policies: MAML-TRPO (``maml_trpo``) and MAML-PPO (``maml_ppo``) on their shared base (``maml``), RL^2
(``rl2``), PEARL (``pearl``), bandit/MDP baselines; installed as ``metarl.agents``.

The algorithms and their trained-policy adapters are importable from here (``from metarl.agents import
MAMLTRPO``) without importing the others.
"""

import importlib
from typing import Any

_WHERE = {"MAMLTRPO": "maml_trpo", "MAMLPPO": "maml_ppo", "MAMLConfig": "maml_config", "MAMLPPOConfig": "maml_config",
          "MAMLBase": "maml", "MAMLPolicy": "maml_policy", "RL2PPO": "rl2", "RL2Config": "rl2_config", "RL2Policy": "rl2",
          "PEARL": "pearl", "PEARLConfig": "pearl_config", "PEARLPolicy": "pearl_policy"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
