"""The data of the continual benchmarks: Omniglot classes split into streamed and held-out drawings,
class-incremental streams, and OML's incremental sine functions.

Omniglot: every class's drawings keep the dataset's order (sorted file names); the first
``stream_drawings`` of a class are the ones a stream shows (and the only ones training uses), the
others measure generalisation. A stream of ``N`` classes is ``N`` classes drawn without replacement
in a random order, each class's stream drawings shown once, class after class.

Sine (OML's incremental sine regression): a function has amplitude U[0.1, 5] and phase U[0, pi],
``y = A sin(x + phase)`` with ``x`` U[-5, 5]; the input is ``x`` followed by a one-hot of the
function's index (``functions`` slots), so the network can tell the functions apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metarl.fewshot.omniglot import LabelledImages

__all__ = ["ClassSet", "class_streams", "SineFunctions"]


@dataclass(frozen=True)
class ClassSet:
    """Labelled images with each class's drawings split into stream and held-out ones.

    Attributes:
        images: ``(n, 1, H, W)`` preprocessed images.
        labels: ``(n,)`` class ids ``0 .. num_classes-1``.
        stream: per class, the indices of its first ``stream_drawings`` drawings.
        held_out: per class, the indices of its other drawings.
    """

    images: torch.Tensor
    labels: torch.Tensor
    stream: tuple[np.ndarray, ...]
    held_out: tuple[np.ndarray, ...]

    @classmethod
    def split(cls, data: LabelledImages, stream_drawings: int) -> "ClassSet":
        """Split each class of ``data`` into its first ``stream_drawings`` drawings and the rest.

        Raises:
            ValueError: a class has no drawing left to hold out.
        """
        labels = data.labels.numpy()
        stream, held_out = [], []
        for c in range(data.num_classes):
            index = np.flatnonzero(labels == c)
            if len(index) <= stream_drawings:
                raise ValueError(f"class {data.class_names[c]} has {len(index)} drawings: --stream-drawings "
                                 f"{stream_drawings} leaves none held out; lower it")
            stream.append(index[:stream_drawings])
            held_out.append(index[stream_drawings:])
        return cls(data.images, data.labels, tuple(stream), tuple(held_out))

    @property
    def num_classes(self) -> int:
        return len(self.stream)

    def stream_pool(self) -> np.ndarray:
        """Indices of every class's stream drawings (what training may use)."""
        return np.concatenate(self.stream)


def class_streams(num_classes: int, length: int, n_streams: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n_streams`` class orders of ``length`` distinct classes each.

    Raises:
        ValueError: fewer than ``length`` classes.
    """
    if length > num_classes:
        raise ValueError(f"a stream of {length} classes needs at least that many classes; the set holds "
                         f"{num_classes}: lower --stream-lengths")
    return [rng.choice(num_classes, size=length, replace=False) for _ in range(n_streams)]


class SineFunctions:
    """OML's incremental sine functions with one-hot function indices.

    Args:
        functions: one-hot slots (the most functions a sequence holds).
    """

    amplitude_range = (0.1, 5.0)
    phase_range = (0.0, float(np.pi))
    x_range = (-5.0, 5.0)

    def __init__(self, functions: int):
        self.functions = int(functions)

    @property
    def input_size(self) -> int:
        return self.functions + 1

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Amplitudes and phases of ``n`` functions."""
        return rng.uniform(*self.amplitude_range, n), rng.uniform(*self.phase_range, n)

    def points(self, amplitude: float, phase: float, index: int, n: int,
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` points of one function: inputs ``(n, functions + 1)`` (one-hot of ``index``, then x), targets ``(n, 1)``."""
        x = rng.uniform(*self.x_range, n)
        inputs = np.zeros((n, self.input_size), dtype=np.float32)
        inputs[:, index] = 1.0
        inputs[:, -1] = x
        return torch.from_numpy(inputs), torch.from_numpy((amplitude * np.sin(x + phase)).astype(np.float32)[:, None])
