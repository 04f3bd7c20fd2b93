"""An episodic memory with reservoir sampling (Vitter 1985), the memory of experience replay (ER).

The memory keeps at most ``capacity`` examples of an unbounded stream such that, after ``t``
examples have been added, every one of them is in memory with the same probability
``min(1, capacity / t)``: the first ``capacity`` examples fill it, and example ``t > capacity``
replaces a uniformly chosen slot with probability ``capacity / t``. All randomness comes from the
``numpy.random.Generator`` given, so a seed fixes what is kept and what is replayed.

    memory = EpisodicMemory(200, np.random.default_rng(0))
    memory.add(x, y)                 # one example, or a batch (first axis)
    replay_x, replay_y = memory.sample(10)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["EpisodicMemory"]


class EpisodicMemory:
    """A fixed-capacity reservoir of (input, target) examples.

    Args:
        capacity: the most examples kept (0: a memory that keeps nothing).
        rng: source of the reservoir's and the replay's random draws.
    """

    def __init__(self, capacity: int, rng: np.random.Generator | None = None):
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 0:
            raise ValueError(f"memory capacity must be a non-negative integer, got {capacity!r}")
        self.capacity = int(capacity)
        self.rng = rng if rng is not None else np.random.default_rng()
        #: examples offered to the memory so far (the reservoir's ``t``)
        self.seen = 0
        self._inputs: torch.Tensor | None = None
        self._targets: torch.Tensor | None = None
        self._size = 0
        self._numpy = False

    def __len__(self) -> int:
        return self._size

    def add(self, inputs: Any, targets: Any) -> None:
        """Offer a batch of examples (first axis; a single example is a batch of one) to the reservoir."""
        self._numpy = not isinstance(inputs, torch.Tensor)  # sample() gives back what it was given
        inputs, targets = torch.as_tensor(inputs), torch.as_tensor(targets)
        if inputs.shape[:1] != targets.shape[:1]:
            raise ValueError(f"inputs and targets must have the same number of examples, got {inputs.shape[0]} "
                             f"and {targets.shape[0]}")
        if self.capacity == 0:
            self.seen += len(inputs)
            return
        if self._inputs is None:
            self._inputs = inputs.new_zeros((self.capacity, *inputs.shape[1:]))
            self._targets = targets.new_zeros((self.capacity, *targets.shape[1:]))
        elif inputs.shape[1:] != self._inputs.shape[1:] or targets.shape[1:] != self._targets.shape[1:]:
            raise ValueError(f"examples of shape {tuple(inputs.shape[1:])} / {tuple(targets.shape[1:])} do not fit a "
                             f"memory of {tuple(self._inputs.shape[1:])} / {tuple(self._targets.shape[1:])}")
        for i in range(len(inputs)):
            self.seen += 1
            if self._size < self.capacity:
                slot = self._size
                self._size += 1
            else:
                slot = int(self.rng.integers(self.seen))
                if slot >= self.capacity:
                    continue
            self._inputs[slot] = inputs[i]
            self._targets[slot] = targets[i]

    def sample(self, n: int) -> tuple[Any, Any]:
        """``n`` examples drawn uniformly without replacement (all of them if the memory holds fewer): NumPy arrays
        when NumPy arrays were added, else tensors.

        Raises:
            ValueError: the memory is empty.
        """
        if self._size == 0:
            raise ValueError("the episodic memory is empty: add examples before sampling from it")
        index = torch.from_numpy(self.rng.choice(self._size, size=min(int(n), self._size), replace=False))
        if self._numpy:
            return self._inputs[index].numpy(), self._targets[index].numpy()
        return self._inputs[index], self._targets[index]

    def state_dict(self) -> dict[str, Any]:
        """The memory's contents and reservoir counter (the generator is its owner's to save)."""
        return {"capacity": self.capacity, "seen": self.seen, "size": self._size,
                "inputs": None if self._inputs is None else self._inputs[: self._size].clone(),
                "targets": None if self._targets is None else self._targets[: self._size].clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        if state["capacity"] != self.capacity:
            raise ValueError(f"a memory of capacity {state['capacity']} cannot load into one of {self.capacity}")
        self.seen, self._size = int(state["seen"]), int(state["size"])
        self._inputs = self._targets = None
        if state["inputs"] is not None:
            self._inputs = state["inputs"].new_zeros((self.capacity, *state["inputs"].shape[1:]))
            self._targets = state["targets"].new_zeros((self.capacity, *state["targets"].shape[1:]))
            self._inputs[: self._size] = state["inputs"]
            self._targets[: self._size] = state["targets"]
