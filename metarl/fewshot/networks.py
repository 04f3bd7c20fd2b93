"""Networks of the few-shot learners: the Conv-4 embedding, the MAML classifier, the sinusoid MLP,
and the memory-augmented network (MANN) with its plain-LSTM baseline.

Every network is initialised from an explicit ``torch.Generator`` (:func:`init_parameters_`), never
from the global RNG, so a run's seed fixes its initial weights.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from metarl.networks import mlp

__all__ = [
    "BatchStatNorm2d",
    "Conv4",
    "ConvClassifier",
    "expand_head",
    "MANN",
    "MemoryState",
    "LSTMBaseline",
    "init_parameters_",
    "sinusoid_mlp",
]


def init_parameters_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise ``module`` in place as PyTorch's defaults do, but drawing from ``generator``.

    Linear and conv layers: Kaiming-uniform weights and uniform(+-1/sqrt(fan_in)) biases; LSTMs:
    uniform(+-1/sqrt(hidden)); batch norm: ones and zeros. Parameters of other modules are left to
    their owners (which draw from the same generator or use constants).
    """
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(sub.weight, a=math.sqrt(5), generator=generator)
            if sub.bias is not None:
                fan_in = sub.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(sub.bias, -bound, bound, generator=generator)
        elif isinstance(sub, (nn.LSTM, nn.LSTMCell)):
            bound = 1.0 / math.sqrt(sub.hidden_size)
            for p in sub.parameters(recurse=False):
                nn.init.uniform_(p, -bound, bound, generator=generator)
        elif isinstance(sub, nn.BatchNorm2d):
            sub.reset_parameters()
    return module


def sinusoid_mlp(hidden: tuple[int, ...] = (40, 40), generator: torch.Generator | None = None) -> nn.Sequential:
    """The 1-40-40-1 ReLU regression network of the MAML paper (section 5.1)."""
    net = mlp(1, hidden, 1, activation="relu")
    if generator is not None:
        init_parameters_(net, generator)
    return net


class BatchStatNorm2d(nn.Module):
    """Batch normalisation with the statistics of the current batch, written with elementary ops.

    Numerically the same as ``nn.BatchNorm2d(track_running_stats=False)``, but PyTorch's fused
    batch-norm kernel has a wrong batching rule for its backward under ``vmap`` (pytorch/functorch
    issue #534), which makes second-order MAML meta-gradients of vmapped tasks silently differ from
    the per-task loop. Mean and variance computed with plain tensor ops differentiate correctly to
    any order, vmapped or not.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
        scale = (self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.eps))
        return (x - mean) * scale + self.bias.view(1, -1, 1, 1)


class Conv4(nn.Module):
    """The Conv-4 embedding of the MAML and ProtoNets papers.

    Four blocks of 3x3 convolution (``hidden`` filters), batch norm and ReLU, each halving the
    resolution: with ``downsample="stride"`` by a stride-2 convolution (MAML's choice on
    Omniglot; a 28x28 image gives a ``hidden * 2 * 2`` embedding), with ``"maxpool"`` by 2x2
    max-pooling after the block (the ProtoNets paper; 4x the convolution cost; 28x28 gives
    ``hidden``).

    Args:
        in_channels: image channels.
        hidden: filters per block.
        running_stats: keep batch-norm running statistics (used by ProtoNets in eval mode). MAML-type
            learners use ``False``: batch statistics of the task's own batch at every call, as in
            the MAML code (:class:`BatchStatNorm2d`, no buffers, correct under ``vmap``).
        downsample: ``"stride"`` or ``"maxpool"``.
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, running_stats: bool = False,
                 downsample: str = "stride"):
        super().__init__()
        if downsample not in ("stride", "maxpool"):
            raise ValueError(f"downsample must be 'stride' or 'maxpool', got {downsample!r}")
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [
                nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, stride=2 if downsample == "stride" else 1,
                          padding=1),
                nn.BatchNorm2d(hidden) if running_stats else BatchStatNorm2d(hidden),
                nn.ReLU(),
            ]
            if downsample == "maxpool":
                layers.append(nn.MaxPool2d(2))
        self.blocks = nn.Sequential(*layers)
        self.hidden, self.downsample = hidden, downsample

    def feature_size(self, image_size: int) -> int:
        """Length of the embedding of an ``image_size`` x ``image_size`` image."""
        side = image_size
        for _ in range(4):
            side = (side - 1) // 2 + 1 if self.downsample == "stride" else side // 2
        if side < 1:
            raise ValueError(f"{image_size}x{image_size} images are too small for four {self.downsample} blocks; "
                             "use a larger --image-size or --downsample stride")
        return self.hidden * side * side

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(images).flatten(1)


def expand_head(params: dict[str, torch.Tensor], ways: int) -> dict[str, torch.Tensor]:
    """``params`` with a shared output row (``head_weight``, ``head_bias``) repeated ``ways`` times: an N-way task's
    output layer, differentiable w.r.t. the shared row."""
    out = dict(params)
    out["head_weight"] = params["head_weight"].expand(ways, -1)
    out["head_bias"] = params["head_bias"].expand(ways)
    return out


class ConvClassifier(nn.Module):
    """Conv-4 plus an output layer whose rows all start from one meta-learned vector.

    For an N-way task the output layer is ``head_weight`` repeated N times (and ``head_bias``
    likewise), so the meta-learned initialisation treats every class alike, fits any N (one
    meta-training run serves 5-way and 20-way tests) and is unaffected by the random label order
    of episodes. This is the shared-head initialisation of Ye & Chao (ICLR 2022, "How to train
    your MAML to excel in few-shot classification"); the inner loop then adapts each row
    separately. Use :meth:`task_parameters` to get an N-way parameter dict and call the network
    through :func:`metarl.adaptation.functional_forward` with it.
    """

    def __init__(self, image_size: int = 28, in_channels: int = 1, hidden: int = 64,
                 generator: torch.Generator | None = None, downsample: str = "stride"):
        super().__init__()
        self.body = Conv4(in_channels, hidden, running_stats=False, downsample=downsample)
        features = self.body.feature_size(image_size)
        # zeros: the initial prediction is uniform and the first inner step moves each class's row
        # towards the mean feature of its support examples
        self.head_weight = nn.Parameter(torch.zeros(features))
        self.head_bias = nn.Parameter(torch.zeros(1))
        if generator is not None:
            init_parameters_(self.body, generator)

    def task_parameters(self, params: dict[str, torch.Tensor], ways: int) -> dict[str, torch.Tensor]:
        """``params`` with the output layer expanded to ``ways`` rows (differentiable w.r.t. the shared row)."""
        return expand_head(params, ways)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.head_weight.dim() != 2:
            raise RuntimeError(
                "ConvClassifier must be called with N-way task parameters: "
                "functional_forward(net, net.task_parameters(params, ways), images)"
            )
        return F.linear(self.body(images), self.head_weight, self.head_bias)


class MemoryState(NamedTuple):
    """What :class:`MANN` carries from one time step to the next."""

    h: torch.Tensor             #: controller hidden state (batch, controller)
    c: torch.Tensor             #: controller cell state
    memory: torch.Tensor        #: (batch, slots, width)
    reads: torch.Tensor         #: last read vectors, concatenated (batch, heads * width)
    read_weights: torch.Tensor  #: last read weightings (batch, heads, slots)
    usage: torch.Tensor         #: decayed usage of each slot (batch, slots)
    least_used: torch.Tensor    #: 1 on the `heads` least-used slots (batch, slots)


def _cosine_similarity(keys: torch.Tensor, memory: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``keys`` (B, heads, W) against every row of ``memory`` (B, slots, W) -> (B, heads, slots)."""
    dots = torch.einsum("bhw,bnw->bhn", keys, memory)
    norms = keys.norm(dim=-1, keepdim=True) * memory.norm(dim=-1).unsqueeze(1)
    return dots / (norms + eps)


class MANN(nn.Module):
    """Memory-augmented neural network (Santoro et al., ICML 2016).

    An LSTM controller reads the current input, the previous step's label (one-hot) and the
    previous memory reads. Each read head emits a key; reads are softmax-over-cosine-similarity
    weightings of the memory rows, sharpened by a learned key strength (as in the Neural Turing
    Machine; without it cosine similarities in [-1, 1] can only produce nearly uniform reads). Writes use least-recently-used access (LRUA): the write
    weighting interpolates, through a learned sigmoid gate, between the previous read weighting
    (update a recently read slot) and the least-used slots (write somewhere fresh); the single
    least-used slot is cleared before each write; usage decays by ``gamma`` each step.

    Args:
        input_size: length of a flattened input image.
        num_classes: label classes per episode (size of the one-hot label input and the output).
        controller_size: LSTM hidden units.
        memory_slots, memory_width: memory shape (128 x 40 in the paper).
        read_heads: number of read (and write) heads.
        gamma: usage decay.
        generator: source of the initial weights.
    """

    def __init__(self, input_size: int, num_classes: int, controller_size: int = 200, memory_slots: int = 128,
                 memory_width: int = 40, read_heads: int = 4, gamma: float = 0.95,
                 generator: torch.Generator | None = None):
        super().__init__()
        if read_heads > memory_slots:
            raise ValueError(f"read_heads ({read_heads}) cannot exceed memory_slots ({memory_slots})")
        self.num_classes, self.memory_slots, self.memory_width = num_classes, memory_slots, memory_width
        self.read_heads, self.gamma = read_heads, gamma
        reads = read_heads * memory_width
        self.controller_size = controller_size
        # the controller is an LSTM over [image, previous label, previous reads]; its input weights
        # are split so that the image part runs for all steps of the sequence in one matrix product
        self.image_gates = nn.Linear(input_size, 4 * controller_size)
        self.recurrent_gates = nn.Linear(num_classes + reads + controller_size, 4 * controller_size, bias=False)
        self.key = nn.Linear(controller_size, reads)
        self.strength = nn.Linear(controller_size, read_heads)
        self.gate = nn.Linear(controller_size, read_heads)
        self.output = nn.Linear(controller_size + reads, num_classes)
        if generator is not None:
            init_parameters_(self, generator)
            bound = 1.0 / math.sqrt(controller_size)  # the LSTM initialisation for the controller
            for weight in (self.image_gates.weight, self.image_gates.bias, self.recurrent_gates.weight):
                nn.init.uniform_(weight, -bound, bound, generator=generator)

    def initial_state(self, batch: int, dtype: torch.dtype = torch.float32) -> MemoryState:
        """Empty memory (rows at 1e-6 so cosine similarities are defined), zero usage and controller."""
        heads, slots, width = self.read_heads, self.memory_slots, self.memory_width
        h = torch.zeros(batch, self.controller_size, dtype=dtype)
        least_used = torch.zeros(batch, slots, dtype=dtype)
        least_used[:, :heads] = 1.0
        return MemoryState(h=h, c=torch.zeros_like(h), memory=torch.full((batch, slots, width), 1e-6, dtype=dtype),
                           reads=torch.zeros(batch, heads * width, dtype=dtype),
                           read_weights=torch.zeros(batch, heads, slots, dtype=dtype),
                           usage=torch.zeros(batch, slots, dtype=dtype), least_used=least_used)

    def step(self, state: MemoryState, image_gates: torch.Tensor, previous_label: torch.Tensor
             ) -> tuple[MemoryState, torch.Tensor]:
        """One time step: controller update, LRU write, content-based read; returns (state, logits).

        Args:
            state: the state after the previous step (:meth:`initial_state` at the first).
            image_gates: ``self.image_gates(image)`` for this step's flattened image, ``(batch, 4 * controller)``.
            previous_label: ``(batch, num_classes)`` one-hot label of the previous step.
        """
        batch = image_gates.shape[0]
        heads, slots, width = self.read_heads, self.memory_slots, self.memory_width
        gates = image_gates + self.recurrent_gates(torch.cat([previous_label, state.reads, state.h], dim=1))
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        keys = torch.tanh(self.key(h)).view(batch, heads, width)
        # LRU access: interpolate between the previously read slots and the least-used ones
        gate = torch.sigmoid(self.gate(h)).unsqueeze(-1)
        write_weights = gate * state.read_weights + (1.0 - gate) * state.least_used.unsqueeze(1)
        # clear the single least-used slot, then write the keys
        cleared = F.one_hot(state.usage.argmin(dim=1), slots).to(state.memory.dtype)
        memory = state.memory * (1.0 - cleared).unsqueeze(-1) + torch.einsum("bhn,bhw->bnw", write_weights, keys)
        strength = 1.0 + F.softplus(self.strength(h)).unsqueeze(-1)
        read_weights = torch.softmax(strength * _cosine_similarity(keys, memory), dim=-1)
        reads = torch.einsum("bhn,bnw->bhw", read_weights, memory).reshape(batch, heads * width)
        usage = self.gamma * state.usage + read_weights.sum(1) + write_weights.sum(1)
        # the `heads` least-used slots (the n smallest usages), a constant for the gradient
        smallest = usage.detach().topk(heads, dim=1, largest=False).indices
        least_used = torch.zeros_like(usage).scatter_(1, smallest, 1.0)
        logits = self.output(torch.cat([h, reads], dim=1))
        return MemoryState(h, c, memory, reads, read_weights, usage, least_used), logits

    def forward(self, inputs: torch.Tensor, previous_labels: torch.Tensor) -> torch.Tensor:
        """Logits for every step of a batch of episodes, ``(batch, steps, num_classes)``.

        Args:
            inputs: ``(batch, steps, input_size)`` flattened images.
            previous_labels: ``(batch, steps, num_classes)`` one-hot label of the previous step
                (zeros at the first step).
        """
        state = self.initial_state(inputs.shape[0], inputs.dtype)
        # unbind (not [:, t]): its backward stacks the step gradients instead of filling a
        # full-size zero tensor per step
        logits = []
        for image_gates, previous_label in zip(self.image_gates(inputs).unbind(1), previous_labels.unbind(1)):
            state, step_logits = self.step(state, image_gates, previous_label)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)


class LSTMBaseline(nn.Module):
    """A plain LSTM fed the same (image, previous label) sequence as :class:`MANN`, without memory."""

    def __init__(self, input_size: int, num_classes: int, hidden_size: int = 200,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.lstm = nn.LSTM(input_size + num_classes, hidden_size, batch_first=True)
        self.output = nn.Linear(hidden_size, num_classes)
        if generator is not None:
            init_parameters_(self, generator)

    def forward(self, inputs: torch.Tensor, previous_labels: torch.Tensor) -> torch.Tensor:
        """Same signature and output as :meth:`MANN.forward`."""
        hidden, _ = self.lstm(torch.cat([inputs, previous_labels], dim=-1))
        return self.output(hidden)
