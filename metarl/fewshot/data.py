"""Episodic N-way K-shot task sampling over any labelled dataset.

A few-shot *episode* (a task) draws ``ways`` classes, ``shots`` support and ``queries`` query
examples of each, and relabels the chosen classes ``0 .. ways-1`` in a random order, so that a
learner cannot memorise a fixed class -> output mapping and must adapt from the support set.

    sampler = EpisodicSampler(labels, ways=5, shots=1, queries=15)
    episode = sampler.sample(rng)                   # indices + remapped labels
    batch = episode.gather(images)                  # support/query tensors
    batches = sampler.sample_batch(images, rng, n)  # the same, stacked over n tasks

All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Episode", "EpisodeBatch", "EpisodicSampler", "mean_and_ci95"]


class EpisodeBatch(NamedTuple):
    """Support and query tensors of one episode, or of a stack of episodes (leading task axis)."""

    support_inputs: torch.Tensor
    support_labels: torch.Tensor
    query_inputs: torch.Tensor
    query_labels: torch.Tensor


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task as indices into a dataset.

    Attributes:
        classes: the dataset labels of the chosen classes; episode label ``i`` is ``classes[i]``.
        support_indices: ``ways * shots`` dataset indices, grouped by episode label.
        support_labels: episode labels (``0 .. ways-1``) of the support examples.
        query_indices: ``ways * queries`` dataset indices, grouped by episode label.
        query_labels: episode labels of the query examples.
    """

    classes: np.ndarray
    support_indices: np.ndarray
    support_labels: np.ndarray
    query_indices: np.ndarray
    query_labels: np.ndarray

    @property
    def ways(self) -> int:
        return len(self.classes)

    def gather(self, inputs: torch.Tensor) -> EpisodeBatch:
        """Index ``inputs`` (first axis = dataset examples) into support and query tensors."""
        return EpisodeBatch(
            inputs[torch.from_numpy(self.support_indices)],
            torch.from_numpy(self.support_labels),
            inputs[torch.from_numpy(self.query_indices)],
            torch.from_numpy(self.query_labels),
        )


def _as_label_array(labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be one label per example (1-D), got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {array.dtype}; map class names to ids first")
    return array.astype(np.int64)


class EpisodicSampler:
    """Draws N-way K-shot episodes from a labelled dataset.

    Args:
        labels: one integer class label per example of the dataset.
        ways: classes per episode (N).
        shots: support examples per class (K).
        queries: query examples per class.
        groups: one group id per example (the dataset it comes from, when several are pooled): an episode's
            classes all come from one group, chosen uniformly. ``None``: one group.

    Raises:
        ValueError: fewer than ``ways`` classes (of some group) have ``shots + queries`` examples; the message
            says how many do and how to fix it.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray | torch.Tensor, *, ways: int, shots: int, queries: int,
                 groups: Sequence[int] | np.ndarray | None = None):
        for name, value, minimum in (("ways", ways, 1), ("shots", shots, 1), ("queries", queries, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        self.ways, self.shots, self.queries = int(ways), int(shots), int(queries)
        array = _as_label_array(labels)
        classes, inverse = np.unique(array, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=len(classes))
        per_class = np.split(order, np.cumsum(counts)[:-1]) if len(classes) else []
        needed = self.shots + self.queries
        usable = [i for i, idx in enumerate(per_class) if len(idx) >= needed]
        if len(usable) < self.ways:
            raise ValueError(
                f"a {ways}-way {shots}-shot episode with {queries} queries per class needs {ways} classes with "
                f"at least {needed} examples each, but only {len(usable)} of the {len(classes)} classes have that "
                "many; lower --ways/--shots/--queries or use a larger dataset"
            )
        #: dataset labels of the classes episodes are drawn from
        self.classes = classes[usable]
        self._indices = [per_class[i] for i in usable]
        self._groups: list[np.ndarray] | None = None  # positions in self.classes of each group's classes
        if groups is not None:
            group_of = _as_label_array(groups)
            if len(group_of) != len(array):
                raise ValueError(f"groups needs one group per example: {len(group_of)} for {len(array)} labels")
            class_group = np.array([group_of[idx[0]] for idx in self._indices], dtype=np.int64)
            self._groups = [np.flatnonzero(class_group == g) for g in np.unique(group_of)]
            small = [len(g) for g in self._groups if len(g) < self.ways]
            if small:
                raise ValueError(f"a {ways}-way episode draws its classes from one dataset, but one has only "
                                 f"{small[0]} classes with {needed}+ examples; lower --ways or drop that dataset")

    def __repr__(self) -> str:
        return (f"EpisodicSampler(ways={self.ways}, shots={self.shots}, queries={self.queries}, "
                f"classes={len(self.classes)})")

    def sample(self, rng: np.random.Generator) -> Episode:
        """One episode; the classes' order (hence the episode labels) is random."""
        if self._groups is not None and len(self._groups) > 1:
            group = self._groups[rng.integers(len(self._groups))]
            chosen = group[rng.choice(len(group), size=self.ways, replace=False)]
        else:
            chosen = rng.choice(len(self.classes), size=self.ways, replace=False)
        support, query = [], []
        for position in chosen:
            pool = self._indices[position]
            picked = pool[rng.choice(len(pool), size=self.shots + self.queries, replace=False)]
            support.append(picked[: self.shots])
            query.append(picked[self.shots:])
        episode_labels = np.arange(self.ways, dtype=np.int64)
        return Episode(
            classes=self.classes[chosen],
            support_indices=np.concatenate(support),
            support_labels=np.repeat(episode_labels, self.shots),
            query_indices=np.concatenate(query) if self.queries else np.zeros(0, dtype=np.int64),
            query_labels=np.repeat(episode_labels, self.queries),
        )

    def sample_batch(self, inputs: torch.Tensor, rng: np.random.Generator, tasks: int) -> EpisodeBatch:
        """``tasks`` episodes gathered from ``inputs`` and stacked on a leading task axis."""
        episodes = [self.sample(rng).gather(inputs) for _ in range(tasks)]
        return EpisodeBatch(*(torch.stack(parts) for parts in zip(*episodes)))


def mean_and_ci95(values: Sequence[float] | np.ndarray | torch.Tensor) -> tuple[float, float]:
    """Mean and half-width of its normal-approximation 95% confidence interval (1.96 standard errors)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError("cannot average an empty set of results")
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged result makes both inf/nan, as it should
        half = 1.96 * array.std(ddof=1) / np.sqrt(array.size) if array.size > 1 else float("nan")
        return float(array.mean()), float(half)
