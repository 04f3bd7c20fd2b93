"""Episodic sampler invariants, the sinusoid task distribution and the 95% interval helper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metarl.fewshot.data import EpisodicSampler, mean_and_ci95
from metarl.fewshot.sinusoid import SinusoidTasks


def make_labels(classes: int = 12, per_class: int = 7, seed: int = 0) -> np.ndarray:
    """Shuffled labels with non-contiguous class ids (so remapping is visible)."""
    labels = np.repeat(np.arange(classes) * 10 + 3, per_class)
    return np.random.default_rng(seed).permutation(labels)


@pytest.mark.parametrize("ways,shots,queries", [(5, 1, 3), (3, 4, 2), (12, 2, 5)])
def test_episode_class_and_label_invariants(ways, shots, queries):
    labels = make_labels()
    sampler = EpisodicSampler(labels, ways=ways, shots=shots, queries=queries)
    rng = np.random.default_rng(1)
    for _ in range(20):
        ep = sampler.sample(rng)
        assert len(set(ep.classes.tolist())) == ways                     # distinct classes
        assert ep.support_indices.shape == (ways * shots,)
        assert ep.query_indices.shape == (ways * queries,)
        assert not set(ep.support_indices) & set(ep.query_indices)       # support and query disjoint
        assert len(set(ep.support_indices)) == ways * shots              # no example drawn twice
        np.testing.assert_array_equal(np.bincount(ep.support_labels, minlength=ways), [shots] * ways)
        np.testing.assert_array_equal(np.bincount(ep.query_labels, minlength=ways), [queries] * ways)
        # episode label i means dataset class classes[i], in support and query alike
        np.testing.assert_array_equal(labels[ep.support_indices], ep.classes[ep.support_labels])
        np.testing.assert_array_equal(labels[ep.query_indices], ep.classes[ep.query_labels])


def test_labels_are_remapped_in_a_random_class_order():
    labels = make_labels(classes=6)
    sampler = EpisodicSampler(labels, ways=3, shots=1, queries=1)
    rng = np.random.default_rng(0)
    orders = {tuple(np.argsort(sampler.sample(rng).classes)) for _ in range(50)}
    assert len(orders) > 1  # label 0 is not always the smallest dataset class


def test_sampler_is_reproducible_from_the_generator():
    labels = make_labels()
    sampler = EpisodicSampler(labels, ways=4, shots=2, queries=3)
    a = [sampler.sample(np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(a[0].support_indices, a[1].support_indices)
    np.testing.assert_array_equal(a[0].query_indices, a[1].query_indices)
    b = sampler.sample(np.random.default_rng(8))
    assert not np.array_equal(a[0].support_indices, b.support_indices)


def test_sample_batch_gathers_and_stacks():
    labels = make_labels(classes=8, per_class=5)
    images = torch.arange(len(labels), dtype=torch.float32).reshape(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    sampler = EpisodicSampler(torch.from_numpy(labels), ways=5, shots=2, queries=3)
    batch = sampler.sample_batch(images, np.random.default_rng(0), tasks=4)
    assert batch.support_inputs.shape == (4, 10, 1, 2, 2)
    assert batch.query_inputs.shape == (4, 15, 1, 2, 2)
    assert batch.support_labels.shape == (4, 10) and batch.query_labels.shape == (4, 15)
    # the gathered pixel value is the dataset index: check the label of that index
    index = batch.support_inputs[..., 0, 0, 0].long()
    for t in range(4):
        remapped = {}
        for i, lab in zip(index[t].tolist(), batch.support_labels[t].tolist()):
            remapped.setdefault(lab, set()).add(int(labels[i]))
        assert all(len(v) == 1 for v in remapped.values()) and len(remapped) == 5


def test_sampler_only_uses_classes_with_enough_examples_and_explains_failure():
    labels = np.array([0] * 5 + [1] * 5 + [2] * 2)
    sampler = EpisodicSampler(labels, ways=2, shots=2, queries=2)
    assert sampler.classes.tolist() == [0, 1]
    with pytest.raises(ValueError, match="only 2 of the 3 classes"):
        EpisodicSampler(labels, ways=3, shots=2, queries=2)
    with pytest.raises(ValueError, match="ways must be an integer"):
        EpisodicSampler(labels, ways=0, shots=1, queries=1)
    with pytest.raises(TypeError, match="integers"):
        EpisodicSampler(np.array([0.5, 1.5]), ways=1, shots=1, queries=0)


def test_mean_and_ci95_is_1_96_standard_errors():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    mean, half = mean_and_ci95(values)
    assert mean == 2.5
    assert half == pytest.approx(1.96 * np.std(values, ddof=1) / 2.0)
    with pytest.raises(ValueError):
        mean_and_ci95([])


def test_sinusoid_tasks_follow_the_maml_distribution():
    tasks = SinusoidTasks()
    batch = tasks.sample(np.random.default_rng(0), tasks=200, shots=10, queries=20)
    assert batch.support_inputs.shape == (200, 10, 1) and batch.query_inputs.shape == (200, 20, 1)
    x = torch.cat([batch.support_inputs, batch.query_inputs], 1)
    y = torch.cat([batch.support_labels, batch.query_labels], 1)
    assert x.min() >= -5 and x.max() <= 5
    assert y.abs().max() <= 5
    # each task is one sinusoid A sin(x - phase): recover A, phase by least squares and check the ranges
    for t in range(0, 200, 20):
        xs, ys = x[t, :, 0].double().numpy(), y[t, :, 0].double().numpy()
        design = np.stack([np.sin(xs), np.cos(xs)], 1)  # A sin(x - p) = A cos p sin x - A sin p cos x
        (a_cos, minus_a_sin), *_ = np.linalg.lstsq(design, ys, rcond=None)
        amplitude, phase = math.hypot(a_cos, minus_a_sin), math.atan2(-minus_a_sin, a_cos)
        assert 0.1 - 1e-4 <= amplitude <= 5 + 1e-4
        assert -1e-4 <= phase <= math.pi + 1e-4
        np.testing.assert_allclose(design @ [a_cos, minus_a_sin], ys, atol=1e-4)
    again = tasks.sample(np.random.default_rng(0), tasks=200, shots=10, queries=20)
    torch.testing.assert_close(again.support_labels, batch.support_labels)
