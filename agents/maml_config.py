"""Settings of MAML-RL's outer optimisers (MAML-TRPO, MAML-PPO), beside the algorithms in ``maml.py``,
``maml_trpo.py`` and ``maml_ppo.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from metarl.config import EnvRunConfig, field

__all__ = ["MAMLBaseConfig", "MAMLConfig", "MAMLPPOConfig"]


@dataclass
class MAMLBaseConfig(EnvRunConfig):
    """Settings shared by every MAML-RL outer optimiser (defaults: the original code's 2-D navigation run;
    per-family presets in ``metarl/presets/maml-trpo.yaml`` and ``maml-ppo.yaml``)."""

    meta_batch_size: int = field(20, "tasks per meta-iteration", bounds="[1, inf)")
    episodes_per_task: int = field(20, "episodes per task for each adaptation step and for the outer loss",
                                   bounds="[1, inf)")
    inner_lr: float = field(0.1, "step size of the inner policy-gradient step", bounds="(0, inf)")
    inner_steps: int = field(1, "inner policy-gradient steps during meta-training, each on fresh episodes of the "
                                "policy adapted so far (as at meta-test)", bounds="[1, inf)")
    first_order: bool = field(False, "first-order MAML (no second derivatives through the inner step)")
    gamma: float = field(0.99, "discount", bounds="[0, 1]")
    gae_lambda: float = field(1.0, "GAE lambda for advantages (1.0: returns minus baseline, as the original)",
                              bounds="[0, 1]")
    baseline: Literal["linear", "value"] = field("linear", "per-task linear feature baseline or an MLP value network")
    hidden_sizes: tuple[int, ...] = field((100, 100), "policy hidden layer sizes", bounds="[1, inf)")
    activation: Literal["relu", "tanh"] = field("relu", "policy activation")
    init_std: float = field(1.0, "initial policy standard deviation (Gaussian policies)", bounds="(0, inf)")
    weight_init: Literal["torch", "glorot"] = field(
        "torch", "policy weight init: PyTorch's nn.Linear default, or Glorot-uniform with zero biases (original MAML-RL)")
    inner_estimator: Literal["vpg", "lvc"] = field(
        "vpg", "inner-step loss: 'vpg', the original MAML's REINFORCE loss log pi * A, or 'lvc', ProMP's "
               "low-variance curvature loss pi / stop_grad(pi) * A: the same inner gradient, but the meta-gradient "
               "keeps the curvature term of the pre-adaptation episodes' dependence on the meta-parameters")
    learn_step_sizes: bool = field(False, "meta-learn one inner step size per inner step (initialised at inner_lr; "
                                          "MAML++'s per-step learning rates), so that later steps may be shorter "
                                          "than the first; meta-test steps past inner_steps take the last")
    multi_step_loss: bool = field(False, "with inner_steps > 1: the outer loss averages the post-adaptation "
                                         "losses after every inner step (MAML++'s multi-step loss), each on the "
                                         "episodes of the policies adapted that many steps, so that every step "
                                         "count is trained, not only the last")
    multi_step_weights: tuple[float, ...] | None = field(
        None, "with multi_step_loss: the weight of the loss after each inner step (default: equal); e.g. 3 1 keeps "
              "the first step's return the main objective while the second is still trained", bounds="[0, inf)")
    metatest_tasks: int = field(40, "held-out tasks in the final meta-test", bounds="[1, inf)")
    metatest_steps: int = field(3, "adaptation steps evaluated in the meta-test (each on fresh episodes)",
                                bounds="[0, inf)")


@dataclass
class MAMLConfig(MAMLBaseConfig):
    """Settings of MAML-TRPO (defaults: the original code's 2-D navigation run)."""

    max_kl: float = field(0.01, "TRPO trust-region size (mean KL of the post-adaptation policies)", bounds="(0, inf)")
    cg_iters: int = field(10, "conjugate-gradient iterations", bounds="[1, inf)")
    cg_damping: float = field(1e-5, "damping added to the Fisher-vector product", bounds="[0, inf)")
    fisher_subsample: int = field(1, "use every k-th episode of each task for the Fisher-vector products "
                                     "(1: exact; k > 1 trades curvature accuracy for speed, as OpenAI baselines' TRPO)",
                                  bounds="[1, inf)")
    ls_max_steps: int = field(15, "line-search backtracking steps", bounds="[1, inf)")
    ls_backtrack_ratio: float = field(0.8, "line-search shrink factor", bounds="(0, 1)")


@dataclass
class MAMLPPOConfig(MAMLBaseConfig):
    """Settings of MAML-PPO; the outer-step defaults are ProMP's (``learning_rate``, ``num_promp_steps``, ``clip_eps``)."""

    outer_lr: float = field(1e-3, "Adam step size of the outer update (ProMP's learning_rate)", bounds="(0, inf)")
    ppo_epochs: int = field(5, "Adam steps on the clipped objective per meta-iteration, all on the same "
                               "episodes (ProMP's num_ppo_steps)", bounds="[1, inf)")
    clip_range: float = field(0.3, "clip range of the post-adaptation likelihood ratio (ProMP's clip_eps)",
                              bounds="(0, 1)")
    inner_kl_coef: float = field(0.0, "weight of ProMP's fixed penalty on the mean KL(sampling pre-adaptation policy "
                                      "|| current one) on the pre-adaptation episodes (0: MAML-PPO; ProMP uses 5e-4)",
                                 bounds="[0, inf)")
    target_kl: float = field(0.02, "stop the Adam epochs once the mean KL(sampling adapted policy || current "
                                   "adapted policy) on the post-adaptation episodes exceeds 1.5 x target_kl, as "
                                   "Stable-Baselines3's PPO, and shrink the step that crossed it (0: neither; ProMP "
                                   "has no such limit)", bounds="[0, inf)")
    kl_backtracks: int = field(10, "halve the Adam step that crossed 1.5 x target_kl up to this many times until the "
                                   "adapted policies are inside it, else undo it (0: always undo)", bounds="[0, inf)")
