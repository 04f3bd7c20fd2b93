"""Settings of RL^2 (GRU or transformer memory), beside the algorithm in ``rl2.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from metarl.config import EnvRunConfig, field

__all__ = ["RL2Config", "RL2TransformerConfig"]


@dataclass
class RL2Config(EnvRunConfig):
    """Settings of RL^2 with PPO.

    These are generic defaults; ``metarl/presets/rl2-ppo.yaml`` holds each family's own (the command line
    and ``RL2PPO(env=...)`` apply them, so a setting given still wins).
    """

    iterations: int = field(500, "meta-iterations (a resumed run may extend them)", bounds="[0, inf)")
    episodes_per_trial: int = field(2, "episodes of the same task per trial (the recurrent state spans them)",
                                    bounds="[1, inf)")
    meta_batch_size: int = field(50, "tasks per meta-iteration", bounds="[1, inf)")
    trials_per_task: int = field(1, "trials of each task per meta-iteration", bounds="[1, inf)")
    memory: Literal["gru", "transformer"] = field(
        "gru", "what carries the trial: a GRU (RL^2) or a causal transformer over the trial's transitions "
               "(agents/rl2_transformer.py; its settings are the transformer_* ones)")
    hidden_size: int = field(128, "GRU state size", bounds="[1, inf)")
    transformer_layers: int = field(2, "transformer memory: blocks", bounds="[1, inf)")
    transformer_heads: int = field(4, "transformer memory: attention heads (must divide transformer_width)",
                                   bounds="[1, inf)")
    transformer_width: int = field(64, "transformer memory: model width (d_model)", bounds="[1, inf)")
    context_length: int = field(0, "transformer memory: steps each step attends to in each layer, itself included (0: "
                                   "the whole trial); L layers reach L x (context_length - 1) steps back. Shorter "
                                   "than an episode is allowed: the memory then sees only recent steps",
                                bounds="[0, inf)")
    transformer_dropout: float = field(0.0, "transformer memory: dropout in PPO updates (never while acting)",
                                       bounds="[0, 1)")
    positional_encoding: Literal["sinusoidal", "learned", "none"] = field(
        "sinusoidal", "transformer memory: the step's position in the trial, sinusoidal, a learned table, or none")
    outer_lr: float = field(1e-3, "Adam learning rate", bounds="(0, inf)")
    lr_final_fraction: float = field(1.0, "learning rate at iteration `anneal_iterations` as a fraction of outer_lr "
                                          "(linear decay; 1.0 keeps it constant)", bounds="(0, 1]")
    anneal_iterations: int = field(0, "iterations over which outer_lr and ent_coef decay (0: no decay)",
                                   bounds="[0, inf)")
    gamma: float = field(0.99, "discount over the whole trial", bounds="[0, 1]")
    gae_lambda: float = field(0.95, "GAE lambda over the whole trial", bounds="[0, 1]")
    clip_range: float = field(0.2, "PPO ratio clip", bounds="(0, inf)")
    ppo_epochs: int = field(4, "PPO epochs per meta-iteration", bounds="[1, inf)")
    num_minibatches: int = field(4, "minibatches of whole trials per epoch", bounds="[1, inf)")
    vf_coef: float = field(0.5, "value loss weight", bounds="[0, inf)")
    ent_coef: float = field(0.01, "entropy bonus weight", bounds="[0, inf)")
    ent_coef_final: float | None = field(None, "entropy weight at iteration `anneal_iterations` (default: ent_coef)",
                                         bounds="[0, inf)")
    max_grad_norm: float = field(0.5, "gradient norm clip", bounds="(0, inf)")
    target_kl: float | None = field(None, "stop an iteration's PPO epochs at the first minibatch (after one update) "
                                          "whose approximate KL from the sampling policy exceeds 1.5 x this (SB3's "
                                          "target_kl); None: never",
                                    bounds="(0, inf)")
    reward_scale: float = field(1.0, "rewards are multiplied by this for the value and advantage targets only "
                                     "(the policy's reward input is unscaled)", bounds="(0, inf)")
    init_std: float = field(1.0, "initial standard deviation of Gaussian policies (Box actions)", bounds="(0, inf)")
    metatest_tasks: int = field(200, "held-out tasks in the final meta-test (one trial each)", bounds="[1, inf)")

    def unused_settings(self, algo: str) -> set[str]:
        """The other memory's settings."""
        transformer = {"transformer_layers", "transformer_heads", "transformer_width", "context_length",
                       "transformer_dropout", "positional_encoding"}
        return transformer if self.memory == "gru" else {"hidden_size"}

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot train."""
        super().validate()
        if self.memory == "transformer" and self.transformer_width % self.transformer_heads:
            raise ValueError(f"transformer_heads={self.transformer_heads} does not divide transformer_width="
                             f"{self.transformer_width}: choose a width that is a multiple of the heads")
        if self.num_minibatches > self.meta_batch_size * self.trials_per_task:
            raise ValueError(f"num_minibatches={self.num_minibatches} is more than the "
                             f"{self.meta_batch_size * self.trials_per_task} trials per iteration; lower it or "
                             "raise meta_batch_size / trials_per_task")


@dataclass
class RL2TransformerConfig(RL2Config):
    """RL^2's settings with the transformer memory as the default (``--algo rl2-transformer``), and the
    smaller Adam step transformers train with."""

    memory: Literal["gru", "transformer"] = field(
        "transformer", "what carries the trial: a causal transformer over the trial's transitions, or a GRU")
    outer_lr: float = field(3e-4, "Adam learning rate", bounds="(0, inf)")
