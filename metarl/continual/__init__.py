"""Continual meta-learning: OML's meta-learned representations, an episodic memory with replay, and the
baselines, on class-incremental Omniglot and incremental sine regression.

    metarl continual --method oml --dataset omniglot --seed 0 --logdir runs/oml
    learner = metarl.continual.load_learner("runs/oml")
    learner.learn(image, "alpha"); learner.predict(images)
"""

from metarl.continual.algorithm import ContinualLearning
from metarl.continual.config import CONTINUAL_METHODS, ContinualConfig
from metarl.continual.inference import load_learner
from metarl.continual.learner import ContinualLearner
from metarl.continual.memory import EpisodicMemory

__all__ = ["ContinualConfig", "ContinualLearner", "ContinualLearning", "EpisodicMemory", "CONTINUAL_METHODS",
           "load_learner"]
