"""Meta-policies: MAML-TRPO and MAML-PPO (``maml``), RL^2 (``rl2``), baselines; installed as ``metarl.agents``."""
