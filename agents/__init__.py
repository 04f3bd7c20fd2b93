"""Meta-policies: MAML-TRPO (and later MAML-PPO, RL^2), installed as ``metarl.agents``."""
