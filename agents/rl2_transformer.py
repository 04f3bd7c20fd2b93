"""In-context meta-RL with a transformer memory: RL^2's policy with causal self-attention over the trial.

The memory reads the same RL^2 inputs as the GRU (observation, previous action, previous reward,
episode-done flag), adds the step's position in the trial, and attends causally over the trial so far
(TrMRL, Melo 2022; AMAGO, Grigsby et al. 2024): every step sees every earlier transition of the trial, or
in each layer the last ``context_length`` of them (over trials longer than twice that, computed in bands of
``context_length`` queries reading ``2 x context_length`` keys, not the ``T x T`` masked product). Everything else is RL^2's: the trial sampler, PPO over whole
trials, GAE, the value head, checkpoints, the meta-test and the trained-policy adapter
(``metarl train --algo rl2-ppo --memory transformer``, or ``--algo rl2-transformer`` with its presets).

Acting step by step keeps a key/value cache (:class:`MemoryCache`): one action costs one pass of the
new step's query over the cached keys, linear in the context, where recomputing the context would be
quadratic. Pre-layer-norm blocks; positions are sinusoidal, learned (up to the trial's length) or none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from metarl.agents.rl2_policy import ActorCriticHeads
from metarl.networks import Categorical, DiagGaussian

__all__ = ["TransformerActorCritic", "MemoryCache", "banded_attention"]


@dataclass
class MemoryCache:
    """The transformer's state while acting: each layer's keys and values of the trial's steps so far.

    Attributes:
        keys / values: per layer ``(B, heads, capacity, head_width)``; slot ``j`` of row ``b`` holds step ``j``
            of that row's trial for ``j < length[b]``.
        length: ``(B,)`` steps stored per row (also the position of the row's next step).
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: torch.Tensor

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0


def _sinusoidal(positions: torch.Tensor, width: int) -> torch.Tensor:
    """Transformer sinusoidal encodings of integer ``positions`` (any shape) -> ``(..., width)``."""
    half = width // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=positions.device) / half)
    angle = positions.to(torch.float32).unsqueeze(-1) * freq
    out = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)
    return F.pad(out, (0, width - 2 * half))


def banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, dropout_p: float = 0.0
                     ) -> torch.Tensor:
    """Causal attention of each step over the last ``window`` steps (itself included), ``(B, heads, T, width)``,
    in blocks of ``window`` queries that each read their own and the previous block's keys: ``T x 2 window``
    scores where the masked full attention computes ``T x T`` (a 10-episode Meta-World trial is 5000 steps)."""
    b, h, t, d = q.shape
    first = F.scaled_dot_product_attention(q[:, :, :window], k[:, :, :window], v[:, :, :window],
                                           is_causal=True, dropout_p=dropout_p)  # the first block: no previous one
    n = -(-t // window) - 1  # blocks after the first
    if n <= 0:
        return first
    pad = (n + 1) * window - t
    q_rest = F.pad(q[:, :, window:], (0, 0, 0, pad)).reshape(b, h * n, window, d)
    k_rest, v_rest = (F.pad(z, (0, 0, 0, pad)).unfold(2, 2 * window, window).transpose(-1, -2)
                      .reshape(b, h * n, 2 * window, d) for z in (k, v))
    i = torch.arange(window, device=q.device)[:, None]
    j = torch.arange(2 * window, device=q.device)[None, :]
    rest = F.scaled_dot_product_attention(q_rest, k_rest, v_rest, attn_mask=(j > i) & (j <= i + window),
                                          dropout_p=dropout_p)
    return torch.cat([first, rest.view(b, h, n * window, d)], dim=2)[:, :, :t]


class _Block(nn.Module):
    """Pre-LN transformer block: causal multi-head self-attention, then a 4x-wide MLP, each residual."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_width = heads, width // heads
        self.attn_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, T, width)`` -> queries, keys, values ``(B, heads, T, head_width)``."""
        b, t, _ = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).split(self.heads * self.head_width, dim=-1)
        return tuple(z.view(b, t, self.heads, self.head_width).transpose(1, 2) for z in (q, k, v))  # type: ignore

    def _finish(self, x: torch.Tensor, attended: torch.Tensor, drop: bool) -> torch.Tensor:
        b, _, t, _ = attended.shape
        dropout = self.dropout if drop else (lambda z: z)
        x = x + dropout(self.out(attended.transpose(1, 2).reshape(b, t, -1)))
        return x + dropout(self.mlp(self.mlp_norm(x)))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None, window: int = 0) -> torch.Tensor:
        """Whole sequences ``(B, T, width)``; ``allowed[i, j]``: step ``i`` may attend to step ``j``, or (``allowed``
        ``None``) each step to the last ``window`` steps (:func:`banded_attention`)."""
        q, k, v = self._split(x)
        p = self.dropout.p if self.training else 0.0
        if allowed is None:
            return self._finish(x, banded_attention(q, k, v, window, p), self.training)
        return self._finish(x, F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p), self.training)

    def step(self, x: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, slot: torch.Tensor, start: int,
             allowed: torch.Tensor, write: torch.Tensor) -> torch.Tensor:
        """One step ``(B, 1, width)``: its key and value go to ``slot`` (rows where ``write``), then its query
        attends over the cache's slots ``start .. start + span`` where ``allowed`` ``(B, span)``: the cost grows with
        the context, not the trial. The cache tensors are updated in place."""
        q, k, v = self._split(x)
        rows = torch.nonzero(write).squeeze(-1)
        cache_k[rows, :, slot[rows]] = k[rows, :, 0]
        cache_v[rows, :, slot[rows]] = v[rows, :, 0]
        span = allowed.shape[1]
        keys, values = cache_k[:, :, start:start + span], cache_v[:, :, start:start + span]
        scores = (q @ keys.transpose(-1, -2)) / math.sqrt(self.head_width)  # (B, heads, 1, span)
        scores = scores.masked_fill(~allowed[:, None, None, :], float("-inf"))
        return self._finish(x, torch.softmax(scores, dim=-1) @ values, drop=False)  # acting: no dropout


class TransformerActorCritic(ActorCriticHeads):
    """A causal transformer over RL^2 inputs with RL^2's policy and value heads on its last layer.

    Args:
        input_dim: width of the RL^2 input.
        action_space: ``Discrete`` or flat ``Box`` (as :class:`~metarl.agents.rl2_policy.RecurrentActorCritic`).
        width: model width (``d_model``).
        layers: transformer blocks.
        heads: attention heads (must divide ``width``).
        context_length: steps each step attends to in each layer, itself included (0: the whole trial so far);
            ``layers`` layers reach ``layers * (context_length - 1)`` steps back.
        dropout: dropout in the blocks during PPO updates (never while acting).
        positional_encoding: ``"sinusoidal"``, ``"learned"`` (a table of ``max_length`` positions) or ``"none"``.
        max_length: the longest trial (steps); needed by learned positions.
        init_std: initial standard deviation of a Gaussian policy.

    Raises:
        ValueError: ``heads`` does not divide ``width``, or learned positions without ``max_length``.
    """

    def __init__(self, input_dim: int, action_space: spaces.Space, *, width: int = 64, layers: int = 2,
                 heads: int = 4, context_length: int = 0, dropout: float = 0.0,
                 positional_encoding: str = "sinusoidal", max_length: int | None = None, init_std: float = 1.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"transformer_heads={heads} does not divide transformer_width={width}: choose a width "
                             "that is a multiple of the heads")
        if positional_encoding not in ("sinusoidal", "learned", "none"):
            raise ValueError(f"positional_encoding must be sinusoidal, learned or none, got {positional_encoding!r}")
        if positional_encoding == "learned" and not max_length:
            raise ValueError("learned positions need the trial's max_length")
        self.width, self.context_length = width, int(context_length)
        #: with a window, attend over long trials in bands (:func:`banded_attention`); ``False``: the masked T x T
        #: attention (the same outputs; kept for the benchmark and the tests)
        self.banded = True
        self.positional_encoding, self.max_length = positional_encoding, max_length
        self.embed = nn.Linear(input_dim, width)
        if positional_encoding == "learned":
            self.positions = nn.Embedding(int(max_length), width)  # type: ignore[arg-type]
        self.blocks = nn.ModuleList(_Block(width, heads, dropout) for _ in range(layers))
        self.final_norm = nn.LayerNorm(width)
        self._make_heads(width, action_space, init_std)

    # ----- inputs --------------------------------------------------------------------------------------
    def _embed(self, inputs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.embed(inputs)
        if self.positional_encoding == "sinusoidal":
            x = x + _sinusoidal(positions, self.width)
        elif self.positional_encoding == "learned":
            if int(positions.max()) >= int(self.max_length):  # type: ignore[arg-type]
                raise ValueError(f"a trial longer than the {self.max_length} steps the learned positions cover")
            x = x + self.positions(positions)
        return x

    def _window(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Whether the step at position ``query`` may attend to the one at ``key`` (broadcast)."""
        allowed = key <= query
        if self.context_length:
            allowed = allowed & (key > query - self.context_length)
        return allowed

    # ----- whole trials --------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> MemoryCache:
        """An empty cache for ``batch_size`` trials."""
        device = self.value_head.weight.device
        return MemoryCache([], [], torch.zeros(batch_size, dtype=torch.long, device=device))

    def forward(self, inputs: torch.Tensor, state: MemoryCache | None = None
                ) -> tuple[Categorical | DiagGaussian, torch.Tensor, None]:
        """Whole trials ``(B, T, input_dim)`` from their first step (a trial's steps left-packed: a step never sees
        a later one, so padding at the end is never attended to by a real step).

        Returns:
            The action distribution and the values over ``(B, T)``, and ``None`` (no carried state).
        """
        if state is not None and int(state.length.max()) > 0:
            raise ValueError("the transformer memory runs whole trials from their start; step() continues one")
        t = inputs.shape[1]
        positions = torch.arange(t, device=inputs.device)
        x = self._embed(inputs, positions.expand(inputs.shape[0], t))
        if self.banded and self.context_length and t > 2 * self.context_length:  # long trials: in bands, not T x T
            allowed = None
        else:
            allowed = self._window(positions[:, None], positions[None, :])
        for block in self.blocks:
            x = block(x, allowed, self.context_length)
        features = self.final_norm(x)
        return self.distribution(features), self.value_head(features).squeeze(-1), None

    # ----- step by step --------------------------------------------------------------------------------
    def step(self, inputs: torch.Tensor, state: MemoryCache, active: torch.Tensor | None = None
             ) -> tuple[Categorical | DiagGaussian, MemoryCache]:
        """One step ``(B, input_dim)`` of each row's trial, attending over the row's cached steps; rows where
        ``active`` is false keep their cache (their output is not used)."""
        b = inputs.shape[0]
        write = torch.ones(b, dtype=torch.bool, device=inputs.device) if active is None else active.bool()
        length = state.length
        needed = int(length.max()) + 1
        if state.capacity < needed:
            state = self._grow(state, b, max(needed, 2 * state.capacity, 16))
        x = self._embed(inputs, length)[:, None]
        # the slots any row may attend to: all stored ones, or with a window only the last context_length
        start = max(int(length.min()) + 1 - self.context_length, 0) if self.context_length else 0
        slots = torch.arange(start, needed, device=inputs.device)
        allowed = self._window(length[:, None], slots[None, :])
        for block, k, v in zip(self.blocks, state.keys, state.values):
            x = block.step(x, k, v, length, start, allowed, write)
        features = self.final_norm(x[:, 0])
        return self.distribution(features), MemoryCache(state.keys, state.values, length + write.long())

    def _grow(self, state: MemoryCache, batch: int, capacity: int) -> MemoryCache:
        """A cache with room for ``capacity`` steps per row (the stored ones copied)."""
        block = self.blocks[0]
        shape = (batch, block.heads, capacity, block.head_width)
        device = self.value_head.weight.device
        keys, values = [], []
        for i in range(len(self.blocks)):
            k, v = torch.zeros(shape, device=device), torch.zeros(shape, device=device)
            if state.keys:
                k[:, :, :state.capacity] = state.keys[i]
                v[:, :, :state.capacity] = state.values[i]
            keys.append(k)
            values.append(v)
        return MemoryCache(keys, values, state.length)
