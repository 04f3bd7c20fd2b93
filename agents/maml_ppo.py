"""MAML-PPO's outer step: ProMP's clipped objective (Rothfuss et al. 2019), optimised with Adam through the
inner steps, with Stable-Baselines3's KL early stop (docs/maml_ppo.md)."""

from __future__ import annotations

from typing import Any

import torch

from metarl.adaptation import Params
from metarl.agents.maml import Batch, MAMLBase, MAMLPPOConfig
from metarl.returns import masked_mean
from metarl.errors import check_finite

__all__ = ["MAMLPPO"]


class MAMLPPO(MAMLBase):
    """MAML-PPO on a task family: the outer step is ProMP's clipped objective, optimised with Adam.

    Per meta-iteration, ``ppo_epochs`` full-batch Adam steps minimise

        -mean_tasks masked_mean_t min(r_t A_t, clip(r_t, 1 - clip_eps, 1 + clip_eps) A_t)
            [+ inner_kl_coef * mean_tasks KL(pi_sampling || pi_theta) on the pre-adaptation episodes]

    where ``r_t = pi_{theta'}(a_t|s_t) / pi_old(a_t|s_t)`` on the post-adaptation episodes,
    ``theta' = theta - inner_lr * grad(inner loss)`` is recomputed from the current ``theta`` in
    every epoch and differentiated through (second order unless ``first_order``), and ``pi_old`` is
    the adapted policy that sampled the episodes. Because ``theta`` moves away from the parameters
    that sampled the pre-adaptation episodes, the inner step weights each step by
    ``pi_theta / pi_sampling`` (held constant), so the inner gradient stays an importance-sampled
    policy gradient; at the sampling parameters (the first epoch) the weights are 1 and the
    meta-gradient is exactly MAML-TRPO's. With ``target_kl > 0`` the epochs stop once the mean KL
    between the sampling and the current adapted policies on the post-adaptation episodes exceeds
    ``1.5 * target_kl`` (Stable-Baselines3's rule), and the Adam step that crossed the limit is
    halved up to ``kl_backtracks`` times until it is inside, else undone. Without the stop one
    meta-batch moved a HalfCheetahDir policy by a KL of 0.16; with the stop alone single first steps
    of KL 38 destroyed a run; with a plain undo every step from iteration ~50 was undone and the run
    stalled (README).

    Args:
        config: the settings (:class:`MAMLPPOConfig`).
    """

    name = "maml-ppo"
    config_class = MAMLPPOConfig
    cfg: MAMLPPOConfig

    importance_weighted_inner_steps = True

    def __init__(self, config: MAMLPPOConfig | None = None, **settings: Any):
        super().__init__(config, **settings)
        self.outer_opt = torch.optim.Adam(self.policy.parameters(), lr=self.cfg.outer_lr)

    def clipped_objective(self, params: Params, train: list[Batch], queries: list[Batch],
                          old_log_probs: list[torch.Tensor], first_order: bool
                          ) -> tuple[torch.Tensor, list[torch.Tensor], list[Any]]:
        """The clipped surrogate loss through the inner steps (mean over the query batches), and per query batch
        the likelihood ratios and the adapted distributions."""
        eps, losses, ratios, dists = self.cfg.clip_range, [], [], []
        terms = self.post_adaptation_log_probs(params, train, queries, first_order)
        for (dist, log_probs), query, old_lp in zip(terms, queries, old_log_probs):
            ratio = torch.exp(log_probs - old_lp)
            adv = query["advantages"]
            objective = torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)
            losses.append(-masked_mean(objective, query["mask"], dim=(1, 2)).mean())
            ratios.append(ratio)
            dists.append(dist)
        return (self.query_weights(len(queries)) * torch.stack(losses)).sum(), ratios, dists

    def _inner_kl(self, params: Params, train: Batch, sampling_dist: Any) -> torch.Tensor:
        """Mean KL(sampling pre-adaptation policy || current meta-policy) on the pre-adaptation episodes."""
        dist = self._dist(params, train["observations"], batched=False)
        return masked_mean(sampling_dist.kl(dist), train["mask"], dim=(1, 2)).mean()

    def outer_step(self, params: Params, train: list[Batch], queries: list[Batch], adapted: list[Params],
                   old_dists: list[Any]) -> dict[str, float]:
        """``ppo_epochs`` Adam steps on the clipped objective, all on this meta-batch's episodes."""
        cfg = self.cfg
        old_log_probs = [old_dist.log_prob(query["actions"]) for old_dist, query in zip(old_dists, queries)]
        with torch.no_grad():
            sampling_dist = self._dist(params, train[0]["observations"], batched=False).detach()
        loss_before = float("nan")
        epochs, kept = 0, 1.0
        limit = 1.5 * cfg.target_kl
        before_step: dict[str, torch.Tensor] = {}

        def adapted_kl(dists: list[Any]) -> float:
            """Mean KL(sampling adapted policies || current ones) over the query batches."""
            return float(torch.stack([masked_mean(old.kl(dist.detach()), query["mask"], dim=(1, 2)).mean()
                                      for old, dist, query in zip(old_dists, dists, queries)]).mean())

        def current_dist() -> list[Any]:
            """The adapted policies' distributions at the current parameters (no gradient)."""
            return self.clipped_objective(params, train, queries, old_log_probs, True)[2]

        def shrink_last_step() -> float:
            """Halve the last step until the adapted policies are inside the limit; the fraction kept (0: undone)."""
            with torch.no_grad():
                after_step = {name: p.detach().clone() for name, p in params.items()}
                fraction = 1.0
                for _ in range(cfg.kl_backtracks):
                    fraction *= 0.5
                    for name, p in params.items():
                        p.copy_(before_step[name] + fraction * (after_step[name] - before_step[name]))
                    if adapted_kl(current_dist()) <= limit:
                        return fraction
                for name, p in params.items():
                    p.copy_(before_step[name])
            return 0.0

        for epoch in range(cfg.ppo_epochs):
            loss, _, dist = self.clipped_objective(params, train, queries, old_log_probs, cfg.first_order)
            if epoch == 0:
                loss_before = float(loss.detach())
            elif cfg.target_kl > 0 and adapted_kl(dist) > limit:
                # Stable-Baselines3 stops here; the step that went past the limit is also shrunk or undone
                kept = shrink_last_step()
                if kept == 0.0:
                    epochs -= 1
                break
            if cfg.inner_kl_coef > 0:
                loss = loss + cfg.inner_kl_coef * self._inner_kl(params, train[0], sampling_dist)
            check_finite(loss, f"MAML-PPO clipped objective (epoch {epoch})")
            self.outer_opt.zero_grad(set_to_none=True)
            loss.backward()
            for name, p in params.items():
                check_finite(p.grad, f"MAML-PPO meta-gradient of {name} (epoch {epoch})")
            if cfg.target_kl > 0:
                before_step = {name: p.detach().clone() for name, p in params.items()}
            self.outer_opt.step()
            epochs += 1
        with torch.no_grad():
            if cfg.target_kl > 0 and kept == 1.0 and epochs == cfg.ppo_epochs:  # the last epoch's step too
                if adapted_kl(current_dist()) > limit:
                    kept = shrink_last_step()
                    if kept == 0.0:
                        epochs -= 1
            loss_after, ratios, dists = self.clipped_objective(params, train, queries, old_log_probs, True)
            kl = adapted_kl(dists)
            clip_fraction = torch.stack([masked_mean(((ratio - 1).abs() > cfg.clip_range).to(query["mask"].dtype),
                                                     query["mask"]) for ratio, query in zip(ratios, queries)]).mean()
            inner_kl = self._inner_kl(params, train[0], sampling_dist)
        return {
            "train/surrogate_loss_before": loss_before,
            "train/surrogate_loss_after": float(loss_after),
            "train/approx_kl": float(kl),
            "train/inner_kl": float(inner_kl),
            "train/clip_fraction": float(clip_fraction),
            "train/ppo_epochs": float(epochs),
            "train/last_step_kept": float(kept),
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "outer_opt": self.outer_opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.outer_opt.load_state_dict(state["outer_opt"])
