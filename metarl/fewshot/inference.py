"""Using a trained few-shot learner on new data: load, adapt on a support set, predict.

    learner = metarl.fewshot.load_learner("runs/proto")
    adapted = learner.adapt(support_images, support_labels)   # images as read from the PNGs
    labels = adapted.predict(query_images)
    intents = metarl.fewshot.load_learner("runs/proto-banking77").adapt(texts, labels).predict(new_texts)

Support labels may be any values (ints, strings, ...); predictions come back in the same values.
Images go through :func:`metarl.fewshot.omniglot.preprocess_images` with the run's image size,
the preprocessing the learner was meta-trained with. Sinusoid checkpoints load as a regressor
with the same ``adapt``/``predict`` interface on ``(n, 1)`` float inputs and targets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from metarl.checkpoint import CheckpointError
from metarl.registry import SavedRun, load
from metarl.fewshot.learners import GradientLearner, PrototypicalNetwork, build_classifier, build_regressor
from metarl.fewshot.omniglot import preprocess_images
from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.text import text_encoder_of
from metarl.fewshot.text_encoders import embed_texts

__all__ = ["load_learner", "learner_from_run", "FewShotClassifier", "AdaptedClassifier", "FewShotRegressor", "AdaptedRegressor"]


class AdaptedClassifier:
    """A learner adapted to one task's classes; :meth:`predict` labels new images of those classes."""

    def __init__(self, owner: "FewShotClassifier", state: Any, classes: np.ndarray):
        self._owner, self._state = owner, state
        #: the task's classes, in the order of the logits' last axis
        self.classes = classes

    def logits(self, query_images: Iterable[Any] | np.ndarray) -> torch.Tensor:
        """``(n, ways)`` class scores of the query images.

        MAML-type learners use batch statistics in batch norm (as in meta-training), so pass the
        query images of a task together rather than one at a time.
        """
        inputs = self._owner.preprocess(query_images)
        with torch.no_grad():
            return self._owner.query_logits(self._state, inputs)

    def predict(self, query_images: Iterable[Any] | np.ndarray) -> np.ndarray:
        """The predicted label (one of the support labels) of each query image."""
        return self.classes[self.logits(query_images).argmax(-1).numpy()]


def _label_array(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Support labels as an array: NumPy's own for labels of one type, an object array (the labels as given) for
    labels of several types, which NumPy would turn into strings."""
    if isinstance(labels, np.ndarray):
        return labels
    values = list(labels)
    if len({type(v) for v in values}) > 1 and not all(isinstance(v, (int, np.integer)) for v in values):
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    return np.asarray(values)


def _adapt_first(learner: Any) -> ValueError:
    return ValueError(f"{type(learner).__name__} predicts after adapting to a support set: "
                      "learner.adapt(support_x, support_y).predict(query_x)")


class FewShotClassifier:
    """A meta-trained classifier (MAML, first-order MAML, Meta-SGD or ProtoNets) ready to adapt."""

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: a few-shot learner predicts after :meth:`adapt` (``learner.adapt(x, y).predict(q)``)."""
        raise _adapt_first(self)

    def __init__(self, settings: FewShotConfig, module: nn.Module, algo: str):
        self.settings, self.module = settings, module.eval()
        #: the learner's name (``"maml"``, ``"protonet"``, ...)
        self.algo = algo

    def preprocess(self, inputs: Iterable[Any] | np.ndarray) -> torch.Tensor:
        """The meta-training preprocessing: images greyscale, resized, ink = 1; texts (runs on a text dataset)
        tokenised with the run's encoder (cut to its ``max_length`` tokens) and embedded by it, in batches of
        similar length (:func:`~metarl.fewshot.text_encoders.embed_texts`: any number of sentences at once)."""
        if self.settings.kind == "text":
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            if not texts or not all(isinstance(t, str) for t in texts):
                raise ValueError("this learner was meta-trained on text: give a list of strings")
            encoder = text_encoder_of(self.module)
            return embed_texts(encoder, encoder.tokenize(texts))
        return preprocess_images(inputs, self.settings.image_size)

    def adapt(self, support_images: Iterable[Any] | np.ndarray, support_labels: Sequence[Any] | np.ndarray,
              steps: int | None = None) -> AdaptedClassifier:
        """Adapt to the classes of a support set.

        Args:
            support_images: raw images (see :func:`~metarl.fewshot.omniglot.preprocess_images`), or for a run on
                a text dataset a list of sentences.
            support_labels: one label per support example, any hashable values; each class needs at
                least one example.
            steps: inner gradient steps (MAML-type learners; default: the run's meta-test steps).
        """
        inputs = self.preprocess(support_images)
        labels = _label_array(support_labels)
        if labels.ndim != 1 or len(labels) != len(inputs):
            what = "sentence" if self.settings.kind == "text" else "image"
            raise ValueError(f"need one label per support {what}: {len(inputs)} {what}s, labels of shape "
                             f"{labels.shape}")
        if labels.dtype == object:  # labels of several types (1 and "a"): ordered by first appearance, kept as given
            classes = np.empty(len(dict.fromkeys(labels.tolist())), dtype=object)
            classes[:] = list(dict.fromkeys(labels.tolist()))
            index = {c: i for i, c in enumerate(classes.tolist())}
            targets = np.array([index[c] for c in labels.tolist()])
        else:
            classes, targets = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"a support set needs at least two classes, got {list(classes)}")
        targets = torch.from_numpy(targets.astype(np.int64))
        ways = len(classes)
        if isinstance(self.module, PrototypicalNetwork):
            with torch.no_grad():
                state: Any = self.module.prototypes(self.module.embed(inputs), targets, ways)
        else:
            steps = self.settings.metatest_steps if steps is None else steps
            with torch.no_grad():
                state = self.module.adapt_one(inputs, targets, steps=steps, ways=ways)
        return AdaptedClassifier(self, state, classes)

    def query_logits(self, state: Any, inputs: torch.Tensor) -> torch.Tensor:
        if isinstance(self.module, PrototypicalNetwork):
            return self.module.logits_from(state, self.module.embed(inputs))
        return self.module.predict(state, inputs)


class AdaptedRegressor:
    """A sinusoid regressor adapted to one task."""

    def __init__(self, owner: "FewShotRegressor", params: dict[str, torch.Tensor]):
        self._owner, self._params = owner, params

    def predict(self, inputs: np.ndarray | torch.Tensor) -> np.ndarray:
        """Predicted targets ``(n, 1)`` for inputs ``(n, 1)``."""
        x = torch.as_tensor(np.asarray(inputs, dtype=np.float32)).reshape(-1, 1)
        with torch.no_grad():
            return self._owner.module.predict(self._params, x).numpy()


class FewShotRegressor:
    """A meta-trained sinusoid regressor (MAML, first-order MAML or Meta-SGD)."""

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: a few-shot learner predicts after :meth:`adapt` (``learner.adapt(x, y).predict(q)``)."""
        raise _adapt_first(self)

    def __init__(self, settings: FewShotConfig, module: GradientLearner, algo: str):
        self.settings, self.module, self.algo = settings, module.eval(), algo

    def adapt(self, inputs: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor,
              steps: int | None = None) -> AdaptedRegressor:
        """Adapt on support points (``inputs`` and ``targets`` of shape ``(n, 1)`` or ``(n,)``)."""
        x = torch.as_tensor(np.asarray(inputs, dtype=np.float32)).reshape(-1, 1)
        y = torch.as_tensor(np.asarray(targets, dtype=np.float32)).reshape(-1, 1)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"need matching, non-empty support inputs and targets, got {len(x)} and {len(y)}")
        if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
            raise ValueError("support inputs and targets must be finite numbers: they hold NaN or inf")
        steps = self.settings.metatest_steps if steps is None else steps
        with torch.no_grad():
            return AdaptedRegressor(self, self.module.adapt_one(x, y, steps=steps))


def learner_from_run(run: SavedRun) -> FewShotClassifier | FewShotRegressor:
    """The few-shot learner of a trained run (the few-shot records' ``load``): its network and weights alone,
    so loading needs no training data.

    Raises:
        CheckpointError: its learner (MANN) has no support-set/query interface, or the weights do not fit.
    """
    algo, settings, state = run.algo, run.config, run.state
    if algo == "mann":
        raise CheckpointError(
            f"{run.path} holds a MANN, a sequence model that reads (image, previous label) streams; load_learner "
            "supports maml, fomaml, metasgd and protonet checkpoints"
        )
    module = (build_regressor(settings, algo) if settings.kind == "sinusoid"
              else build_classifier(settings, algo))
    try:
        module.load_state_dict(state["algorithm"]["model"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint in {run.path} does not fit the {algo} model of its settings "
                              f"({type(exc).__name__}); it is damaged or from another version") from exc
    if settings.kind == "sinusoid":
        return FewShotRegressor(settings, module, algo)
    return FewShotClassifier(settings, module, algo)


def load_learner(logdir: str | os.PathLike, best: bool = False) -> FewShotClassifier | FewShotRegressor:
    """The meta-trained learner saved in ``logdir`` (a run directory or a checkpoint file), in one call: the
    few-shot case of :func:`metarl.load`.

    Args:
        logdir: the run directory (its last state, ``checkpoint.pt``) or a checkpoint file.
        best: the best validation state (``best.pt`` of a run trained with ``--eval-every``) instead.

    Raises:
        CheckpointError: no readable checkpoint there, or its learner (MANN) has no support-set/query interface.
        ValueError: it is not a few-shot run.
    """
    return load(logdir, best=best, kind="few-shot")
