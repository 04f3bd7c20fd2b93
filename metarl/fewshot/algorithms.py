"""The few-shot :class:`~metarl.training.MetaAlgorithm` classes: the learners of :mod:`metarl.fewshot.learners`
plugged into the shared outer loop :func:`metarl.training.run_meta_training` - sinusoid regression and MANN
here, episodic classification in :mod:`metarl.fewshot.classification` (re-exported), the outer optimiser in
:mod:`metarl.fewshot.outer`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from metarl.errors import check_validation_seed
from metarl.fewshot.classification import FewShotClassification
from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.data import EpisodeBatch, EpisodicSampler, mean_and_ci95
from metarl.fewshot.learners import (INSTANCES_REPORTED, SINUSOID_STEPS_REPORTED, SINUSOID_TEST_SHOTS,
                                     GradientLearner, build_regressor)
from metarl.fewshot.networks import MANN, LSTMBaseline
from metarl.fewshot.omniglot import LabelledImages, random_affine
from metarl.fewshot.outer import OuterAdam, TrainedModule
from metarl.fewshot.sinusoid import SinusoidTasks

__all__ = ["SinusoidMetaLearning", "FewShotClassification", "MANNMetaLearning", "OuterAdam"]


# --------------------------------------------------------------------------------------------
# meta-algorithms (plugged into metarl.training.run_meta_training)


class SinusoidMetaLearning(TrainedModule):
    """MAML / first-order MAML / Meta-SGD on sinusoid regression (MAML paper, section 5.1).

    Validation (``eval_every``, through the shared outer loop): the negated mean 5-shot MSE over 1 to
    ``metatest_steps`` inner steps on ``eval_tasks`` sinusoids of ``eval_seed``; the best state goes to
    ``best.pt`` and is meta-tested into ``metatest_best.json``. This matters because MAML's initialisation,
    tuned for one step of size 0.01, can sit past the stability edge of gradient descent for some 5-point
    tasks; iterates where repeated steps blow up on a few tasks come and go during training.

    Meta-test: ``metatest_tasks`` held-out sinusoids, each adapted on 5 support points; the MSE on
    ``metatest_queries`` query points after 0-10 inner steps, with 95% intervals over tasks.
    """

    metatest_only_settings = ("metatest_tasks", "metatest_chunk")  # validation reads the steps and queries

    def __init__(self, settings: FewShotConfig, algo: str):
        super().__init__(settings, algo)
        self.tasks = SinusoidTasks()
        self.module = build_regressor(settings, algo, torch.Generator().manual_seed(settings.seed))
        self.optimizer = OuterAdam(self.module, settings.outer_lr)

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        s = self.settings
        batch = self.tasks.sample(rng, s.meta_batch_size, s.shots, s.queries)
        loss, _ = self.module.query_loss(batch.support_inputs, batch.support_labels, batch.query_inputs,
                                         batch.query_labels, steps=s.inner_steps, multi_step=s.multi_step_loss)
        self._step(loss)
        return {"train/query_mse": loss.item(), "samples": s.meta_batch_size * (s.shots + s.queries)}

    def validation_scores(self, n_tasks: int, seed: int) -> dict[str, float]:
        """``score``: minus the mean 5-shot MSE over steps 1..``metatest_steps`` on ``n_tasks`` sinusoids of
        ``seed`` (``-inf`` where some task's adaptation diverged), and the MSE after 1, 5 and 10 steps."""
        s = self.settings
        check_validation_seed(seed, s.metatest_seed)
        batch = self.tasks.sample(np.random.default_rng(seed), n_tasks, SINUSOID_TEST_SHOTS, s.metatest_queries)
        mse = [float(m.mean()) for m in self.mse_by_step(self.module, batch, max(1, s.metatest_steps))]
        score = float(np.mean(mse[1:]))
        out = {f"mse_step{k}": mse[k] for k in SINUSOID_STEPS_REPORTED if k < len(mse) and np.isfinite(mse[k])}
        out["diverged"] = float(not np.isfinite(score))
        return {"score": -score if np.isfinite(score) else float("-inf"), **out}

    @staticmethod
    def mse_by_step(learner: GradientLearner, batch: EpisodeBatch, steps: int) -> list[torch.Tensor]:
        """Per-task query MSE ``(tasks,)`` after 0, 1, ..., ``steps`` inner steps on the support points."""
        tasks = batch.support_inputs.shape[0]
        with torch.no_grad():
            params = {k: v.expand(tasks, *v.shape) for k, v in learner.initial_parameters().items()}
            mse = []
            for step in range(steps + 1):
                if step > 0:
                    params = learner.further_step(params, batch.support_inputs, batch.support_labels)
                errors = (vmap(learner.predict)(params, batch.query_inputs) - batch.query_labels).pow(2)
                mse.append(errors.mean(dim=(1, 2)))
        return mse

    def meta_test(self) -> dict[str, Any]:
        s = self.settings
        batch = self.tasks.sample(np.random.default_rng(s.metatest_seed), s.metatest_tasks, SINUSOID_TEST_SHOTS,
                                  s.metatest_queries)
        steps = max(s.metatest_steps, max(SINUSOID_STEPS_REPORTED))
        stats = [mean_and_ci95(m) for m in self.mse_by_step(self.module, batch, steps)]
        # a step count at which some task's adaptation blew up is reported as null (strict JSON has no inf/nan)
        return {
            "mse_by_step": {str(k): _finite_or_none(stats[k][0]) for k in range(steps + 1)},
            "mse_by_step_ci95": {str(k): _finite_or_none(stats[k][1]) for k in range(steps + 1)},
            "test_tasks": s.metatest_tasks,
            "test_shots": SINUSOID_TEST_SHOTS,
            "test_queries": s.metatest_queries,
        }

    def format_metatest(self, result: Mapping[str, Any]) -> str:
        lines = [f"{self.name}: {result['test_shots']}-shot MSE over {result['test_tasks']} tasks (95% interval)"]
        for step, value in result["mse_by_step"].items():
            shown = "diverged on some tasks" if value is None else f"{value:.4f} +- {result['mse_by_step_ci95'][step]:.4f}"
            lines.append(f"  after {int(step):2d} steps: {shown}")
        return "\n".join(lines)

    def metatest_scalars(self, result: Mapping[str, Any]) -> dict[str, float]:
        return {f"mse_step{k}": result["mse_by_step"][str(k)] for k in SINUSOID_STEPS_REPORTED
                if result["mse_by_step"][str(k)] is not None}


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


class _SequenceModels(nn.Module):
    def __init__(self, models: dict[str, nn.Module]):
        super().__init__()
        self.models = nn.ModuleDict(models)


class MANNMetaLearning(TrainedModule):
    """MANN (Santoro et al. 2016) and a plain LSTM baseline, trained side by side on the same episodes.

    An episode shows ``shots`` instances of each of ``ways`` classes in random order; at every
    step the network sees the image and the previous step's label and must predict the current
    label. The meta-test reports accuracy at the 1st, 2nd, 5th and 10th presentation of a class.
    """

    metatest_only_settings = ("metatest_tasks", "metatest_chunk")

    def __init__(self, settings: FewShotConfig, algo: str, train: LabelledImages, test: LabelledImages):
        super().__init__(settings, algo)
        if settings.shots < max(INSTANCES_REPORTED):
            raise ValueError(f"MANN episodes need at least {max(INSTANCES_REPORTED)} instances per class "
                             f"(--shots) to report the 10th-presentation accuracy, got {settings.shots}")
        self.train_data, self.test_data = train, test
        self.sampler = EpisodicSampler(train.labels, ways=settings.ways, shots=settings.shots, queries=0)
        EpisodicSampler(test.labels, ways=settings.ways, shots=settings.shots, queries=0)  # fail early if too small
        generator = torch.Generator().manual_seed(settings.seed)
        size = settings.image_size ** 2
        models: dict[str, nn.Module] = {
            "mann": MANN(size, settings.ways, settings.controller_size, settings.memory_slots, settings.memory_width,
                         settings.read_heads, generator=generator)}
        if settings.lstm_baseline:
            models["lstm"] = LSTMBaseline(size, settings.ways, settings.controller_size, generator=generator)
        self.module = _SequenceModels(models)
        self.optimizer = OuterAdam(self.module, settings.outer_lr)

    def sequences(self, data: LabelledImages, sampler: EpisodicSampler, rng: np.random.Generator, count: int,
                  augment: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``count`` episodes as (inputs, previous-label one-hots, labels, presentation number)."""
        ways, steps = self.settings.ways, self.settings.ways * self.settings.shots
        indices, labels = [], []
        for _ in range(count):
            episode = sampler.sample(rng)
            order = rng.permutation(steps)
            indices.append(episode.support_indices[order])
            labels.append(episode.support_labels[order])
        index = torch.from_numpy(np.stack(indices))
        label = torch.from_numpy(np.stack(labels))
        images = data.images[index]
        inputs = (random_affine(images, rng) if augment else images).flatten(2)
        previous = torch.zeros(count, steps, ways)
        previous[:, 1:] = F.one_hot(label[:, :-1], ways).float()
        presentation = (F.one_hot(label, ways).cumsum(1) * F.one_hot(label, ways)).sum(-1)
        return inputs, previous, label, presentation

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        s = self.settings
        inputs, previous, labels, _ = self.sequences(self.train_data, self.sampler, rng, s.meta_batch_size,
                                                     augment=s.augment)
        metrics: dict[str, float] = {"samples": labels.numel()}
        total = 0.0
        for name, model in self.module.models.items():
            logits = model(inputs, previous)
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
            total = total + loss
            metrics[f"train/{name}_loss"] = loss.item()
            metrics[f"train/{name}_accuracy"] = float((logits.argmax(-1) == labels).float().mean())
        self._step(total)
        return metrics

    def per_instance_accuracy(self, model: nn.Module, episodes: int, seed: int) -> dict[int, np.ndarray]:
        """Per-episode accuracy at each presentation number 1..shots on held-out episodes."""
        s = self.settings
        rng = np.random.default_rng(seed)
        sampler = EpisodicSampler(self.test_data.labels, ways=s.ways, shots=s.shots, queries=0)
        out: dict[int, list[np.ndarray]] = {k: [] for k in range(1, s.shots + 1)}
        with torch.no_grad():
            for start in range(0, episodes, s.metatest_chunk):
                inputs, previous, labels, presentation = self.sequences(
                    self.test_data, sampler, rng, min(s.metatest_chunk, episodes - start))
                correct = (model(inputs, previous).argmax(-1) == labels).float()
                for k in out:
                    mask = (presentation == k).float()
                    out[k].append(((correct * mask).sum(1) / mask.sum(1)).numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    def meta_test(self) -> dict[str, Any]:
        s = self.settings
        result: dict[str, Any] = {"test_episodes": s.metatest_tasks, "ways": s.ways, "instances_per_class": s.shots}
        for name, model in self.module.models.items():
            per_instance = self.per_instance_accuracy(model, s.metatest_tasks, s.metatest_seed)
            stats = {k: mean_and_ci95(v) for k, v in per_instance.items()}
            entry = {"per_instance_accuracy": {str(k): stats[k][0] for k in stats},
                     "per_instance_accuracy_ci95": {str(k): stats[k][1] for k in stats}}
            if name == "mann":
                result.update(entry)
            else:
                result[f"{name}_baseline"] = entry
        return result

    def format_metatest(self, result: Mapping[str, Any]) -> str:
        rows = [("MANN", result)]
        if "lstm_baseline" in result:
            rows.append(("LSTM", result["lstm_baseline"]))
        header = "  ".join(f"{'instance ' + str(k):>18}" for k in INSTANCES_REPORTED)
        lines = [f"{self.name}: {result['ways']}-class episodes, {result['test_episodes']} held-out episodes "
                 "(accuracy % +- 95% interval)", f"{'':6}{header}"]
        for label, entry in rows:
            acc, ci = entry["per_instance_accuracy"], entry["per_instance_accuracy_ci95"]
            cells = "  ".join(f"{100 * acc[str(k)]:>10.2f} +- {100 * ci[str(k)]:4.2f}" for k in INSTANCES_REPORTED)
            lines.append(f"{label:6}{cells}")
        return "\n".join(lines)

    def metatest_scalars(self, result: Mapping[str, Any]) -> dict[str, float]:
        out = {f"mann_instance{k}": result["per_instance_accuracy"][str(k)] for k in INSTANCES_REPORTED}
        if "lstm_baseline" in result:
            out.update({f"lstm_instance{k}": result["lstm_baseline"]["per_instance_accuracy"][str(k)]
                        for k in INSTANCES_REPORTED})
        return out
