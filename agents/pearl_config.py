"""Settings of PEARL, beside the algorithm in ``pearl.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from metarl.config import EnvRunConfig, field

__all__ = ["PEARLConfig"]


@dataclass
class PEARLConfig(EnvRunConfig):
    """Settings of PEARL (defaults: the public code's ``configs/default.py``, in episodes instead of steps;
    per-family presets in ``metarl/presets/pearl.yaml``)."""

    iterations: int = field(500, "meta-iterations (a resumed run may extend them)", bounds="[0, inf)")
    train_tasks: int = field(100, "training tasks, drawn once from the seed (each has its own replay buffers)",
                             bounds="[1, inf)")
    tasks_per_iteration: int = field(5, "training tasks collected for per meta-iteration", bounds="[1, inf)")
    initial_episodes: int = field(10, "episodes per training task with z from the prior before training",
                                  bounds="[1, inf)")
    prior_episodes: int = field(2, "episodes per collected task with z from the prior (both buffers)",
                                bounds="[0, inf)")
    posterior_episodes: int = field(0, "episodes per collected task with z from the posterior (both buffers)",
                                    bounds="[0, inf)")
    extra_posterior_episodes: int = field(2, "episodes per collected task with z from the posterior, for the "
                                             "actor-critic only (not the encoder's context)", bounds="[0, inf)")
    posterior_update_every: int = field(1, "episodes between posterior re-inferences while collecting",
                                        bounds="[1, inf)")
    gradient_steps: int = field(2000, "SAC updates per meta-iteration", bounds="[1, inf)")
    meta_batch_size: int = field(16, "training tasks per SAC update", bounds="[1, inf)")
    batch_size: int = field(256, "replay transitions per task per SAC update", bounds="[1, inf)")
    context_size: int = field(64, "context transitions per task per SAC update", bounds="[1, inf)")
    latent_dim: int = field(5, "size of the latent task variable z", bounds="[1, inf)")
    hidden_sizes: tuple[int, ...] = field((300, 300, 300), "actor and critic hidden layers", bounds="[1, inf)")
    encoder_hidden_sizes: tuple[int, ...] = field((200, 200, 200), "task encoder hidden layers", bounds="[1, inf)")
    encoder_aggregator: Literal["product", "mean"] = field(
        "product", "how the encoder combines the context: 'product' of per-transition Gaussians (PEARL's) or 'mean' "
        "of per-transition features (deep sets)")
    prior_actions: Literal["policy", "uniform"] = field(
        "policy", "how the episodes with z from the prior act (training's initial and prior episodes, the "
                  "meta-test's prior episodes): the policy given z, or uniformly random actions (a random walk, "
                  "whose context can locate a goal where one straight path cannot)")
    use_next_obs: bool = field(False, "put s' into the context (tasks that differ in dynamics)")
    outer_lr: float = field(3e-4, "Adam learning rate of actor, critic, encoder and temperature", bounds="(0, inf)")
    gamma: float = field(0.99, "discount", bounds="[0, 1]")
    tau: float = field(0.005, "target network averaging rate", bounds="(0, 1]")
    reward_scale: float = field(5.0, "rewards are multiplied by this in the Bellman target", bounds="(0, inf)")
    alpha: float = field(1.0, "entropy temperature (the initial one with --learn-alpha)", bounds="(0, inf)")
    learn_alpha: bool = field(False, "learn the temperature towards target_entropy (SAC v2)")
    target_entropy: float | None = field(None, "entropy target of --learn-alpha (default: -action dimensions)")
    kl_lambda: float = field(0.1, "weight of KL(q(z|c) || N(0, I)) in the encoder's loss", bounds="[0, inf)")
    policy_reg: float = field(1e-3, "weight of the actor's mean and log-std L2 penalties (the public code's)",
                              bounds="[0, inf)")
    critic_reward: Literal["env", "dense", "env+dense"] = field(
        "env", "reward of the Bellman target: 'env' (the family's), 'dense' (its step info['dense_reward'], as "
               "PEARL's sparse point robot) or 'env+dense' (the family's plus dense_reward_weight times the dense "
               "one); the context keeps the family's")
    dense_reward_weight: float = field(0.1, "--critic-reward env+dense: the dense reward's weight", bounds="[0, inf)")
    replay_capacity: int = field(1_000_000, "replay buffer transitions kept per training task", bounds="[1, inf)")
    metatest_tasks: int = field(40, "held-out tasks in the final meta-test (one trial each)", bounds="[1, inf)")
    metatest_episodes: int = field(3, "episodes per meta-test trial (the first with z from the prior)",
                                   bounds="[2, inf)")
    metatest_sample_prior: bool = field(True, "the meta-test's prior episodes sample their actions, as the training's "
                                              "prior episodes that form the encoder's context (the posterior "
                                              "episodes act with the policy's mode)")
    metatest_prior_episodes: int = field(1, "meta-test episodes acting with z from the prior (a fresh draw each) "
                                            "before posterior sampling starts (the public code's num_exp_traj_eval: "
                                            "1; 5 for its sparse point robot)", bounds="[1, inf)")

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot train."""
        super().validate()
        if self.tasks_per_iteration > self.train_tasks:
            raise ValueError(f"tasks_per_iteration={self.tasks_per_iteration} exceeds train_tasks={self.train_tasks}")
        if self.meta_batch_size > self.train_tasks:
            raise ValueError(f"meta_batch_size={self.meta_batch_size} exceeds train_tasks={self.train_tasks}")
        if self.metatest_prior_episodes >= self.metatest_episodes:
            raise ValueError(f"metatest_prior_episodes={self.metatest_prior_episodes} leaves no posterior episode in a "
                             f"trial of metatest_episodes={self.metatest_episodes}: raise --metatest-episodes")
        if self.prior_episodes + self.posterior_episodes == 0:
            raise ValueError("prior_episodes + posterior_episodes must be at least 1: the encoder's context comes "
                             "from those episodes")
