"""MAML-TRPO's outer step (Finn et al. 2017): one natural-gradient step in a KL trust region, differentiated
through the inner steps (conjugate gradient on the Fisher-vector product, backtracking line search)."""

from __future__ import annotations

from typing import Any

import torch
from torch.func import grad, jvp, vjp, vmap

from metarl.adaptation import Params, detach_params, functional_forward
from metarl.agents.maml import Batch, MAMLBase, MAMLConfig
from metarl.returns import masked_mean
from metarl.errors import check_finite
from metarl.trpo import backtracking_line_search, conjugate_gradient, flat, unflat_like

__all__ = ["MAMLTRPO"]


class MAMLTRPO(MAMLBase):
    """MAML-TRPO on a task family: the outer step is one TRPO step through the inner step.

    Args:
        config: the settings (:class:`MAMLConfig`).
    """

    name = "maml-trpo"
    config_class = MAMLConfig
    cfg: MAMLConfig

    def _surrogate(self, params: Params, train: list[Batch], queries: list[Batch], old_log_probs: list[torch.Tensor],
                   old_dists: list[Any], first_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The surrogate loss and the mean KL from the sampling policies, averaged over the query batches."""
        losses, kls = [], []
        terms = self.post_adaptation_log_probs(params, train, queries, first_order)
        for (dist, log_probs), query, old_lp, old_dist in zip(terms, queries, old_log_probs, old_dists):
            ratio = torch.exp(log_probs - old_lp)
            losses.append(-masked_mean(ratio * query["advantages"], query["mask"], dim=(1, 2)).mean())
            kls.append(masked_mean(old_dist.kl(dist), query["mask"], dim=(1, 2)).mean())
        return (self.query_weights(len(queries)) * torch.stack(losses)).sum(), torch.stack(kls).mean()

    def fisher_vector_product(self, params: Params, train: list[Batch], queries: list[Batch], adapted: list[Params],
                              old_dists: list[Any]) -> Any:
        """``v -> (H + damping I) v`` with ``H`` the Hessian of the mean KL through the inner steps at ``params``.

        At the current parameters the KL's gradient vanishes, so ``H = mean_j J_j^T F_j J_j`` exactly, with
        ``J_j`` the Jacobian of the parameters adapted for query batch ``j`` (a forward-mode product through
        the inner steps) and ``F_j`` the Fisher of those adapted policies; ``fisher_subsample`` estimates
        both from every k-th episode.
        """
        k, n_tasks, n_queries = self.cfg.fisher_subsample, len(next(iter(queries[0].values()))), len(queries)
        names = list(params)
        start = detach_params(params)
        train_sub = [{key: value[:, ::k] for key, value in batch.items()} for batch in train]
        subsampled = [(query["observations"][:, ::k], query["mask"][:, ::k],
                       [field[:, ::k].contiguous() for field in old_dist]) for query, old_dist in zip(queries, old_dists)]
        adapted = [detach_params(state) for state in adapted]
        dist_type = type(old_dists[0])

        def adapt_fn(p: Params) -> tuple[Params, ...]:
            return tuple(self.adapt_through(p, train_sub, first_order=False)[-n_queries:])

        def task_hvp(p: Params, u: Params, o: torch.Tensor, m: torch.Tensor, *old: torch.Tensor) -> Params:
            # J^T H J u, with J the Jacobian of the distribution's fields in the parameters and H the KL's Hessian
            # in those fields (elementwise, cheap): the KL's Hessian in the parameters at p, as its gradient
            # vanishes there (p sampled the episodes), for a forward, a tangent and a backward pass instead of
            # differentiating the gradient
            def fields_of(q: Params) -> tuple[torch.Tensor, ...]:
                return tuple(functional_forward(self.policy, q, o))

            def kl_of(fields: tuple[torch.Tensor, ...]) -> torch.Tensor:
                return masked_mean(dist_type(*old).kl(dist_type(*fields)), m) / (n_tasks * n_queries)

            fields, pull_back = vjp(fields_of, p)
            _, j_u = jvp(fields_of, (p,), (u,))
            _, h_j_u = jvp(grad(kl_of), (fields,), (j_u,))
            return pull_back(h_j_u)[0]

        _, transpose = vjp(adapt_fn, start)
        like = list(start.values())

        def fvp(vector: torch.Tensor) -> torch.Tensor:
            v = dict(zip(names, unflat_like(vector, like)))
            _, tangents = jvp(adapt_fn, (start,), (v,))
            hvs = tuple(vmap(task_hvp)(state, tangent, obs, mask, *old)
                        for state, tangent, (obs, mask, old) in zip(adapted, tangents, subsampled))
            out = transpose(hvs)[0]
            return flat([out[n] for n in names]) + self.cfg.cg_damping * vector

        return fvp

    def outer_step(self, params: Params, train: list[Batch], queries: list[Batch], adapted: list[Params],
                   old_dists: list[Any]) -> dict[str, float]:
        """A TRPO step: conjugate gradient on the Fisher through the inner steps, then a line search."""
        cfg = self.cfg
        old_log_probs = [old_dist.log_prob(query["actions"]) for old_dist, query in zip(old_dists, queries)]
        param_list = list(params.values())
        loss, _ = self._surrogate(params, train, queries, old_log_probs, old_dists, cfg.first_order)
        check_finite(loss, "MAML-TRPO surrogate loss")
        grads = flat(torch.autograd.grad(loss, param_list))
        check_finite(grads, "MAML-TRPO meta-gradient")
        fvp = self.fisher_vector_product(params, train, queries, adapted, old_dists)
        step_dir = conjugate_gradient(fvp, grads, cfg.cg_iters)
        shs = 0.5 * (step_dir @ fvp(step_dir))
        step = step_dir / torch.sqrt(shs / cfg.max_kl).clamp_min(1e-12)
        check_finite(step, "TRPO step direction (conjugate gradient)")
        old_flat = flat([p.detach() for p in param_list]).clone()

        def set_params(vector: torch.Tensor) -> None:
            with torch.no_grad():
                for p, v in zip(param_list, unflat_like(vector, param_list)):
                    p.copy_(v)

        evaluated: dict[float, tuple[float, float]] = {}

        def evaluate(fraction: float) -> tuple[float, float]:
            set_params(old_flat - fraction * step)
            with torch.no_grad():
                new_loss, new_kl = self._surrogate(params, train, queries, old_log_probs, old_dists, True)
            evaluated[fraction] = float(new_loss), float(new_kl)
            return evaluated[fraction]

        old_loss = float(loss.detach())
        del loss, fvp
        fraction, ls_steps = backtracking_line_search(evaluate, old_loss, cfg.max_kl, cfg.ls_max_steps,
                                                      cfg.ls_backtrack_ratio)
        if fraction > 0:  # the search stops right after evaluating (and setting) the accepted fraction
            new_loss, new_kl = evaluated[fraction]
        else:
            set_params(old_flat)
            new_loss, new_kl = old_loss, 0.0
        return {
            "train/surrogate_loss_before": old_loss,
            "train/surrogate_loss_after": new_loss,
            "train/approx_kl": new_kl,
            "train/line_search_steps": ls_steps,
            "train/step_accepted": float(fraction > 0),
        }
