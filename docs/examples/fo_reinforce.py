"""First-order MAML with a REINFORCE outer step: an algorithm registered from outside metarl.

Put this file in your working directory, then::

    metarl train --algo fo_reinforce:fo-reinforce --env metarl/Navigation2D-v0
    metarl evaluate runs/fo-reinforce-Navigation2D-v0-s0

It reuses MAML-RL's sampling, advantages, inner step, meta-test and trained-policy adapter
(``MAMLBase``, ``MAMLPolicy``) and replaces the outer update: one Adam step on the post-adaptation
REINFORCE loss, differentiated through first-order inner steps (the adapted parameters move with the
meta-parameters; no second derivatives), as the FOMAML baseline of Finn et al. (2017);
``--no-first-order`` differentiates through the inner step instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

import metarl
from metarl.agents.maml import MAMLBase, MAMLBaseConfig, MAMLPolicy
from metarl.config import field
from metarl.errors import check_finite
from metarl.returns import masked_mean


@dataclass
class FOReinforceConfig(MAMLBaseConfig):
    """MAML-RL's settings (first order by default), plus the outer Adam step size."""

    first_order: bool = field(True, "first-order MAML (no second derivatives through the inner step)")
    outer_lr: float = field(0.01, "Adam step size of the outer REINFORCE update", bounds="(0, inf)")


class FOReinforce(MAMLBase):
    """First-order MAML-RL whose outer step is one Adam step on the post-adaptation REINFORCE loss."""

    name = "fo-reinforce"
    config_class = FOReinforceConfig

    def __init__(self, config: FOReinforceConfig | None = None, **settings: Any):
        super().__init__(config, **settings)
        self.outer_opt = torch.optim.Adam(self.policy.parameters(), lr=self.cfg.outer_lr)

    def _query_loss(self, params: Any, train: list, query: dict) -> tuple[torch.Tensor, Any]:
        ((dist, log_probs),) = self.post_adaptation_log_probs(params, train, [query], self.cfg.first_order)
        return -masked_mean(log_probs * query["advantages"], query["mask"]), dist

    def outer_step(self, params: Any, train: list, queries: list, adapted: list, old_dists: list
                   ) -> dict[str, float]:
        query = queries[-1]
        loss, _ = self._query_loss(params, train, query)
        check_finite(loss, "FO-REINFORCE outer loss")
        self.outer_opt.zero_grad()
        loss.backward()
        self.outer_opt.step()
        with torch.no_grad():
            after, dist = self._query_loss(params, train, query)
            kl = masked_mean(old_dists[-1].kl(dist), query["mask"])
        return {"train/surrogate_loss_before": float(loss.detach()), "train/surrogate_loss_after": float(after),
                "train/approx_kl": float(kl)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "outer_opt": self.outer_opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.outer_opt.load_state_dict(state["outer_opt"])


metarl.register_algorithm(
    "fo-reinforce", kind="meta-rl", config_class=FOReinforceConfig, build=FOReinforce, load=MAMLPolicy.from_run,
    presets={"metarl/Navigation2D-v0": {"meta_batch_size": 20, "episodes_per_task": 20, "inner_lr": 0.1,
                                        "outer_lr": 0.01, "iterations": 100}},
    summary="first-order MAML with a REINFORCE outer step (docs/extending.md)")
