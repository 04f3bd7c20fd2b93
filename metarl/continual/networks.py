"""The continual learners' network: a representation-learning network (RLN) and a linear prediction
network (PLN) on top of it, as in OML with the July 2020 fix of its public code (a linear PLN, as
Beaulieu et al. 2020 suggest).

Every network is initialised from an explicit ``torch.Generator``, so a run's seed fixes its weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from metarl.fewshot.networks import init_parameters_

__all__ = ["ContinualNetwork", "omniglot_rln", "sine_rln", "fresh_rows"]


def omniglot_rln(hidden: int, layers: int, image_size: int) -> tuple[nn.Sequential, int]:
    """``layers`` 3x3 stride-2 convolutions of ``hidden`` filters with ReLU, flattened; returns (net, feature size).

    No batch norm: an online learner sees one example at a time, where batch statistics do not exist
    (OML's RLN has none either).
    """
    modules: list[nn.Module] = []
    size, channels = image_size, 1
    for _ in range(layers):
        modules += [nn.Conv2d(channels, hidden, 3, stride=2, padding=1), nn.ReLU()]
        channels, size = hidden, (size - 1) // 2 + 1
    modules.append(nn.Flatten())
    return nn.Sequential(*modules), hidden * size * size


def sine_rln(in_features: int, hidden: int, layers: int) -> tuple[nn.Sequential, int]:
    """``layers`` fully connected ReLU layers of ``hidden`` units; returns (net, feature size)."""
    modules: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*modules), hidden


def fresh_rows(rows: int, features: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """New PLN output rows: Kaiming-normal weights (fan-in) and zero biases, as OML re-initialises them."""
    weight = torch.randn(rows, features, generator=generator) * math.sqrt(2.0 / features)
    return weight, torch.zeros(rows)


class ContinualNetwork(nn.Module):
    """RLN followed by a linear PLN (``outputs`` rows: one per training class, or 1 for regression).

    Attributes:
        rln: the representation (meta-learned by OML, frozen at meta-test for OML and pretrain).
        pln: ``nn.Linear(features, outputs)``.
    """

    def __init__(self, rln: nn.Module, features: int, outputs: int, generator: torch.Generator):
        super().__init__()
        self.rln = rln
        self.pln = nn.Linear(features, outputs)
        self.features = features
        init_parameters_(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pln(self.rln(x))
