"""The online learner every continual method uses at meta-test, and users use on their own streams.

    learner = metarl.continual.load_learner("runs/oml")      # a trained representation
    for x, y in stream:                                      # one example (or a small batch) at a time
        learner.learn(x, y)                                  # single pass
    labels = learner.predict(images)

Classification labels may be any hashable values; a label not seen before gets a fresh output row of
the linear prediction network (PLN). With ``train_rln=False`` (OML, pretrain, oml-er, iid) only the
PLN learns and the representation (RLN) is frozen; with ``train_rln=True`` (finetune, er) the whole
network learns. A learner with an :class:`~metarl.continual.memory.EpisodicMemory` replays a batch
from it at every step (:meth:`ContinualLearner.update`).

Inputs: a ``torch.Tensor`` is taken as the network's input as it is (already preprocessed); anything
else (NumPy arrays as read from Omniglot's PNG files, PIL images, lists) goes through the learner's
``preprocess`` function, the preprocessing the representation was trained with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metarl.continual.memory import EpisodicMemory
from metarl.continual.networks import fresh_rows

__all__ = ["ContinualLearner"]

Task = Literal["classification", "regression"]


class ContinualLearner:
    """A representation plus a linear prediction network that learns online from a stream.

    Args:
        rln: the representation network (the learner keeps it as given: pass a copy to keep yours).
        features: the RLN's output size.
        task: ``"classification"`` (cross-entropy over the labels seen so far) or ``"regression"``
            (mean squared error on one output).
        lr: online learning rate.
        optimizer: ``"adam"`` or ``"sgd"``.
        train_rln: also update the representation online (finetune, er); else it stays frozen.
        memory: an episodic memory to replay from at every step (er, oml-er); ``None`` for none.
        replay_batch: examples replayed per step.
        pln: regression: the trained PLN to start from (classification always starts with no rows).
        preprocess: raw inputs -> network input tensor (default: ``torch.as_tensor`` as float).
        seed: draws the fresh output rows.
        method: the continual method's name, for display.
    """

    def __init__(self, rln: nn.Module, features: int, *, task: Task = "classification", lr: float = 1e-3,
                 optimizer: Literal["adam", "sgd"] = "adam", train_rln: bool = False,
                 memory: EpisodicMemory | None = None, replay_batch: int = 10, pln: nn.Linear | None = None,
                 preprocess: Callable[[Any], torch.Tensor] | None = None, seed: int = 0, method: str = ""):
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"the online learning rate must be a positive number, got {lr!r}")
        if replay_batch < 1:
            raise ValueError(f"replay_batch must be at least 1, got {replay_batch}")
        self.rln, self.features, self.task, self.lr = rln, int(features), task, float(lr)
        self.train_rln, self.memory, self.replay_batch = train_rln, memory, int(replay_batch)
        self.method, self.optimizer_name = method, optimizer
        self._preprocess = preprocess
        self._generator = torch.Generator().manual_seed(int(seed))
        self.rln.requires_grad_(train_rln)
        self.rln.train(train_rln)
        #: the labels learned so far, in the order of the PLN's rows (classification)
        self.classes: list[Hashable] = []
        self._rows: dict[Hashable, int] = {}
        if task == "regression":
            if pln is None:
                weight, bias = fresh_rows(1, self.features, self._generator)
            else:
                if pln.out_features != 1 or pln.in_features != self.features:
                    raise ValueError(f"a regression PLN must map {self.features} features to 1 output, got "
                                     f"{pln.in_features} -> {pln.out_features}")
                weight, bias = pln.weight.detach().clone(), pln.bias.detach().clone()
        else:
            weight, bias = torch.zeros(8, self.features), torch.zeros(8)
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
        self._optimizer = self._make_optimizer()

    # ------------------------------------------------------------------ inputs and targets

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [self.weight, self.bias] + (list(self.rln.parameters()) if self.train_rln else [])
        if self.optimizer_name == "adam":
            return torch.optim.Adam(params, lr=self.lr)
        return torch.optim.SGD(params, lr=self.lr)

    def _inputs(self, x: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            inputs = x.float()
        elif self._preprocess is not None:
            inputs = self._preprocess(x)
        else:
            try:
                inputs = torch.as_tensor(np.asarray(x, dtype=np.float32))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"inputs must be numbers, got {x!r:.80}") from exc
        if not torch.isfinite(inputs).all():
            raise ValueError("inputs hold NaN or inf: give finite numbers")
        return inputs

    def _encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """What the learner stores and steps on: features when the RLN is frozen (computed once), else inputs."""
        if self.train_rln:
            return inputs
        with torch.no_grad():
            return self._features(inputs)

    def _features(self, inputs: torch.Tensor) -> torch.Tensor:
        """The representation's features of ``inputs``; inputs of a shape it cannot take are one line."""
        try:
            return self.rln(inputs)
        except RuntimeError as exc:
            raise ValueError(f"inputs of shape {tuple(inputs.shape)} do not fit this learner's representation "
                             f"({str(exc).splitlines()[0][:120]}): give a batch (n, ...) as it was trained on (sine: "
                             "rows of one-hot function index, then x; Omniglot: images)") from None

    def _head(self, encoded: torch.Tensor) -> torch.Tensor:
        features = self._features(encoded) if self.train_rln else encoded
        if features.dim() != 2 or features.shape[1] != self.features:
            raise ValueError(f"the representation gave features of shape {tuple(features.shape)}, expected "
                             f"(n, {self.features}): check the input's shape")
        n = len(self.classes) if self.task == "classification" else 1
        return features @ self.weight[:n].T + self.bias[:n]

    def _targets(self, y: Any, n: int, *, learn: bool) -> torch.Tensor:
        if self.task == "regression":
            try:
                target = torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(-1, 1)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"regression targets must be numbers, got {y!r:.80}") from exc
            if len(target) != n:
                raise ValueError(f"got {n} inputs but {len(target)} targets")
            if not torch.isfinite(target).all():
                raise ValueError("regression targets hold NaN or inf: give finite numbers")
            return target
        if isinstance(y, (torch.Tensor, np.ndarray)):
            y = y.tolist()
        labels = list(y) if isinstance(y, (list, tuple)) else [y]
        if len(labels) != n:
            raise ValueError(f"got {n} inputs but {len(labels)} labels")
        for label in labels:
            if not isinstance(label, Hashable):
                raise ValueError(f"a label must be hashable (a number, a string, a tuple), got {type(label).__name__}: "
                                 f"{label!r:.60}")
        if learn:
            for label in labels:
                if label not in self._rows:
                    self._add_class(label)
        return torch.tensor([self._rows[label] for label in labels], dtype=torch.int64)

    def _add_class(self, label: Hashable) -> None:
        row = len(self.classes)
        if row == len(self.weight):
            self._grow(2 * len(self.weight))
        weight, bias = fresh_rows(1, self.features, self._generator)
        with torch.no_grad():
            self.weight[row] = weight[0]
            self.bias[row] = bias[0]
        self._rows[label] = row
        self.classes.append(label)

    def _grow(self, rows: int) -> None:
        """Room for ``rows`` output rows; the optimiser's state for the existing rows is kept."""
        old_weight, old_bias = self.weight, self.bias
        weight = torch.zeros(rows, self.features)
        bias = torch.zeros(rows)
        weight[: len(old_weight)] = old_weight.detach()
        bias[: len(old_bias)] = old_bias.detach()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
        old_state = self._optimizer.state
        optimizer = self._make_optimizer()
        for old, new in ((old_weight, self.weight), (old_bias, self.bias)):
            if old in old_state:
                optimizer.state[new] = {k: (self._pad(v, rows) if torch.is_tensor(v) and v.dim() > 0 else v)
                                        for k, v in old_state[old].items()}
        for p in self.rln.parameters() if self.train_rln else ():
            if p in old_state:
                optimizer.state[p] = old_state[p]
        self._optimizer = optimizer

    @staticmethod
    def _pad(value: torch.Tensor, rows: int) -> torch.Tensor:
        out = value.new_zeros((rows, *value.shape[1:]))
        out[: len(value)] = value
        return out

    # ------------------------------------------------------------------ learning

    def _loss(self, encoded: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        out = self._head(encoded)
        if self.task == "regression":
            return F.mse_loss(out, targets)
        return F.cross_entropy(out, targets)

    def _step(self, encoded: torch.Tensor, targets: torch.Tensor) -> float:
        loss = self._loss(encoded, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the online loss became {loss.item()}; lower the learning rate ({self.lr})")
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        return loss.detach().item()

    def learn(self, x: Any, y: Any) -> float:
        """One online step on one example or a small batch (with a memory: :meth:`update`); returns the loss."""
        if self.memory is not None:
            return self.update((x, y))
        inputs = self._inputs(x)
        return self._step(self._encode(inputs), self._targets(y, len(inputs), learn=True))

    def update(self, new_data: tuple[Any, Any]) -> float:
        """Experience replay: sample a batch from the episodic memory, take one joint step on the new and the
        replayed examples, then add the new ones to the memory; returns the loss.

        Raises:
            ValueError: the learner has no memory.
        """
        if self.memory is None:
            raise ValueError("this learner has no episodic memory: create it with memory=EpisodicMemory(capacity, rng) "
                             "(load_learner(..., memory_capacity=200))")
        x, y = new_data
        inputs = self._inputs(x)
        encoded, targets = self._encode(inputs), self._targets(y, len(inputs), learn=True)
        batch_x, batch_y = encoded, targets
        if len(self.memory):
            replay_x, replay_y = self.memory.sample(self.replay_batch)
            batch_x, batch_y = torch.cat([encoded, replay_x]), torch.cat([targets, replay_y])
        loss = self._step(batch_x, batch_y)
        self.memory.add(encoded.detach(), targets)
        return loss

    def fit_offline(self, x: Any, y: Any, *, epochs: int, batch_size: int, rng: np.random.Generator) -> None:
        """Learn a whole dataset offline: ``epochs`` passes over it in shuffled mini-batches (the iid reference)."""
        inputs = self._inputs(x)
        encoded, targets = self._encode(inputs), self._targets(y, len(inputs), learn=True)
        for _ in range(epochs):
            order = torch.from_numpy(rng.permutation(len(encoded)))
            for start in range(0, len(order), batch_size):
                index = order[start:start + batch_size]
                self._step(encoded[index], targets[index])

    # ------------------------------------------------------------------ prediction

    def outputs(self, x: Any) -> torch.Tensor:
        """Class scores ``(n, classes learned)`` or regression outputs ``(n, 1)``."""
        inputs = self._inputs(x)
        with torch.no_grad():
            return self._head(self._encode(inputs))

    def predict(self, x: Any) -> np.ndarray:
        """The predicted label of each input (one of the labels learned) or the regression output ``(n,)``.

        Raises:
            ValueError: a classifier that has learned no class yet.
        """
        if self.task == "classification" and not self.classes:
            raise ValueError("the learner has not learned any class yet: call learn(x, y) first")
        out = self.outputs(x)
        if self.task == "regression":
            return out[:, 0].numpy()
        return np.asarray([self.classes[row] for row in out.argmax(-1).tolist()])

    def __repr__(self) -> str:
        memory = f", memory={len(self.memory)}/{self.memory.capacity}" if self.memory is not None else ""
        return (f"ContinualLearner(method={self.method!r}, task={self.task!r}, lr={self.lr}, "
                f"train_rln={self.train_rln}, classes={len(self.classes)}{memory})")
