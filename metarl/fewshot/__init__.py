"""Supervised few-shot meta-learning on the shared adaptation core.

MAML, first-order MAML and Meta-SGD adapt through :mod:`metarl.adaptation` (the same inner loop
as the RL agents); Prototypical Networks adapt by averaging support embeddings; a memory-augmented
network (MANN) adapts by writing the episode into external memory. Training goes through the
shared outer loop :func:`metarl.training.run_meta_training` (``metarl fewshot`` /
``scripts/train_fewshot.py``); a trained classifier is used on new characters with

    learner = metarl.fewshot.load_learner(logdir)
    adapted = learner.adapt(support_images, support_labels)
    labels = adapted.predict(query_images)
"""

from metarl.fewshot.inference import load_learner

__all__ = ["load_learner"]
