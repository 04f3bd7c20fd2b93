"""Continual meta-learning as a :class:`~metarl.training.MetaAlgorithm`: OML meta-training or i.i.d.
pretraining of a representation, then every continual method's meta-test on the same streams.

OML (Javed & White 2019, with the meta-gradient of the public code's July 2020 fix): a meta-iteration
samples a trajectory of ``traj_classes`` classes, re-initialises their PLN output rows, takes
``traj_classes * traj_shots`` single-example SGD steps on the PLN only, class after class
(:func:`metarl.adaptation.adapt_sequence`, differentiated through; second order unless
``first_order``), and back-propagates the loss of the final PLN on the trajectory classes' other
drawings plus ``remember_size`` examples of random classes into the RLN and the PLN's initialisation.
Pretraining trains the same network on the same classes with ordinary mini-batch cross-entropy (MSE for
sine). Meta-test: :mod:`metarl.continual.evaluation`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metarl.adaptation import adapt_sequence
from metarl.algorithm import MetaAlgorithm
from metarl.errors import check_finite
from metarl.continual.config import CONTINUAL_METHODS, REPRESENTATION, ContinualConfig, methods_of
from metarl.continual.data import ClassSet, SineFunctions
from metarl.continual.networks import ContinualNetwork, fresh_rows, omniglot_rln, sine_rln

__all__ = ["ContinualLearning", "build_network", "load_data"]


def build_network(config: ContinualConfig, outputs: int, generator: torch.Generator) -> ContinualNetwork:
    """The run's RLN + linear PLN with ``outputs`` rows."""
    if config.dataset == "sinusoid":
        rln, features = sine_rln(SineFunctions(config.sine_functions).input_size, config.hidden, config.rln_layers)
    else:
        rln, features = omniglot_rln(config.hidden, config.rln_layers, config.image_size)
    return ContinualNetwork(rln, features, outputs, generator)


def load_data(config: ContinualConfig) -> dict[str, ClassSet]:
    """Omniglot's class sets: ``train`` (training alphabets, rotations as classes if set), ``select`` (training
    alphabets' characters, for choosing the online learning rate) and ``test`` (held-out alphabets)."""
    from metarl.fewshot.omniglot import default_omniglot_path, load_omniglot

    characters = load_omniglot(Path(config.data) if config.data else default_omniglot_path(), config.image_size)
    train_chars = characters.select_alphabets(config.train_alphabets)
    return {
        "train": ClassSet.split(train_chars.classes(rotations=config.rotations), config.stream_drawings),
        "select": ClassSet.split(train_chars.classes(rotations=False), config.stream_drawings),
        "test": ClassSet.split(characters.select_alphabets(config.test_alphabets).classes(), config.stream_drawings),
    }


def check_stream_lengths(config: ContinualConfig, data: dict[str, ClassSet]) -> None:
    """Refuse, before training, a ``--stream-lengths`` entry the meta-test could not draw a stream of: more than
    the held-out alphabets' classes, or than the training alphabets' characters that choose the learning rate."""
    longest = max(config.stream_lengths)
    for name, what in (("test", "held-out classes (the test alphabets' characters)"),
                       ("select", "characters of the training alphabets that choose the online learning rate")):
        if longest > data[name].num_classes:
            raise ValueError(f"--stream-lengths {longest} exceeds the {data[name].num_classes} {what}; give lengths "
                             f"of at most {min(data['test'].num_classes, data['select'].num_classes)}")


class ContinualLearning(MetaAlgorithm):
    """A continual method's run: train its representation, then meta-test the methods that use it."""

    config_class = ContinualConfig
    metatest_only_settings = ("metatest_streams", "eval_methods", "lr_candidates", "lr_streams", "online_optimizer",
                              "memory_capacity", "replay_batch", "iid_epochs", "stream_lengths")

    def __init__(self, config: ContinualConfig, algo: str):
        if algo not in CONTINUAL_METHODS:
            raise ValueError(f"unknown continual method {algo!r}; choose from {list(CONTINUAL_METHODS)}")
        config.validate()
        self.name, self.cfg = algo, config
        #: how this run trains its representation: "oml" or "pretrain"
        self.representation = REPRESENTATION[algo]
        self.methods = methods_of(config, algo)
        foreign = [m for m in self.methods if m != "iid" and REPRESENTATION[m] != self.representation]
        if foreign:
            raise ValueError(f"--eval-methods {foreign} use the {REPRESENTATION[foreign[0]]} representation, not this "
                             f"{algo} run's ({self.representation}); evaluate them from a {foreign[0]} run")
        generator = torch.Generator().manual_seed(config.seed)
        if config.dataset == "sinusoid":
            self.sine = SineFunctions(config.sine_functions)
            self.data: dict[str, ClassSet] = {}
            outputs = 1
        else:
            self.data = load_data(config)
            outputs = self.data["train"].num_classes
            if config.traj_classes > outputs:
                raise ValueError(f"--traj-classes {config.traj_classes} exceeds the {outputs} training classes; lower it")
            check_stream_lengths(config, self.data)
        self.network = build_network(config, outputs, generator)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.outer_lr)

    # ------------------------------------------------------------------ training

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        loss_fn = _mse_loss if self.cfg.dataset == "sinusoid" else _cross_entropy_loss
        if self.representation == "pretrain":
            inputs, targets = self._iid_batch(rng)
            loss = loss_fn(self._pln_params(), (self.network.rln(inputs), targets))
            metrics = {"train/loss": loss.item(), "samples": len(targets)}
        else:
            metrics, loss = self._oml_loss(rng, loss_fn)
        check_finite(loss, f"the {self.name} training loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), float("inf"))
        check_finite(norm, f"the {self.name} gradient")
        self.optimizer.step()
        return metrics

    def _oml_loss(self, rng: np.random.Generator, loss_fn: Any) -> tuple[dict[str, float], torch.Tensor]:
        """OML's meta-loss: the final PLN's loss on the meta set after the trajectory's inner steps."""
        if self.cfg.dataset == "sinusoid":
            (traj_x, traj_y), (meta_x, meta_y) = self._sine_trajectory(rng)
        else:
            (traj_x, traj_y), (meta_x, meta_y) = self._omniglot_trajectory(rng)
        steps, per_step = traj_x.shape[:2]
        features = self.network.rln(torch.cat([traj_x.flatten(0, 1), meta_x]))
        traj_features, meta_features = features[: steps * per_step].unflatten(0, (steps, per_step)), \
            features[steps * per_step:]
        params = self._pln_params()
        with torch.no_grad():
            before = loss_fn(params, (meta_features, meta_y))
        adapted = adapt_sequence(loss_fn, params, (traj_features, traj_y), step_size=self.cfg.inner_lr,
                                 first_order=self.cfg.first_order)
        loss = loss_fn(adapted, (meta_features, meta_y))
        metrics = {"train/meta_loss": loss.item(), "train/meta_loss_before": before.item(),
                   "samples": int(traj_y.numel() + meta_y.shape[0])}
        if self.cfg.dataset == "omniglot":
            with torch.no_grad():
                logits = meta_features @ adapted["weight"].T + adapted["bias"]
                metrics["train/meta_accuracy"] = float((logits.argmax(-1) == meta_y).float().mean())
        return metrics, loss

    def _iid_batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Pretraining's mini-batch: ``batch_size`` random training examples (sinusoid: the points of a
        trajectory's functions, all at once)."""
        if self.cfg.dataset == "sinusoid":
            (traj_x, traj_y), (meta_x, meta_y) = self._sine_trajectory(rng)
            return torch.cat([traj_x.flatten(0, 1), meta_x]), torch.cat([traj_y.flatten(0, 1), meta_y])
        data = self.data["train"]
        pool = data.stream_pool()
        index = torch.from_numpy(pool[rng.choice(len(pool), size=self.cfg.batch_size,
                                                 replace=len(pool) < self.cfg.batch_size)])
        return data.images[index], data.labels[index]

    def _pln_params(self) -> dict[str, torch.Tensor]:
        return {"weight": self.network.pln.weight, "bias": self.network.pln.bias}

    def _omniglot_trajectory(self, rng: np.random.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                                     tuple[torch.Tensor, torch.Tensor]]:
        """(trajectory: ``(steps, 1, ...)`` images and labels, class after class; meta set: the trajectory
        classes' other drawings plus ``remember_size`` random training examples)."""
        cfg, data = self.cfg, self.data["train"]
        classes = rng.choice(data.num_classes, size=cfg.traj_classes, replace=False)
        traj, held = [], []
        for c in classes:
            pool = data.stream[c]
            picks = rng.choice(len(pool), size=min(2 * cfg.traj_shots, len(pool)), replace=False)
            traj.append(pool[picks[: cfg.traj_shots]])
            held.append(pool[picks[cfg.traj_shots:]])
        # OML re-initialises the trajectory classes' output rows, so the inner loop must learn them
        generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        with torch.no_grad():
            weight, bias = fresh_rows(len(classes), self.network.features, generator)
            self.network.pln.weight[torch.from_numpy(classes)] = weight
            self.network.pln.bias[torch.from_numpy(classes)] = bias
        pool = data.stream_pool()
        remember = pool[rng.choice(len(pool), size=cfg.remember_size, replace=len(pool) < cfg.remember_size)]
        traj_index = torch.from_numpy(np.concatenate(traj))
        meta_index = torch.from_numpy(np.concatenate([*held, remember]))
        return ((data.images[traj_index][:, None], data.labels[traj_index][:, None]),
                (data.images[meta_index], data.labels[meta_index]))

    def _sine_trajectory(self, rng: np.random.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                                  tuple[torch.Tensor, torch.Tensor]]:
        """(trajectory: ``traj_shots`` batches per function, function after function; meta set:
        ``remember_size`` fresh points of every trajectory function)."""
        cfg = self.cfg
        n = min(cfg.traj_classes, cfg.sine_functions)
        slots = rng.permutation(cfg.sine_functions)[:n]
        amplitudes, phases = self.sine.sample(n, rng)
        traj_x, traj_y, meta_x, meta_y = [], [], [], []
        for a, p, slot in zip(amplitudes, phases, slots):
            for _ in range(cfg.traj_shots):
                x, y = self.sine.points(a, p, int(slot), cfg.batch_size, rng)
                traj_x.append(x)
                traj_y.append(y)
            x, y = self.sine.points(a, p, int(slot), max(cfg.remember_size, 1), rng)
            meta_x.append(x)
            meta_y.append(y)
        return (torch.stack(traj_x), torch.stack(traj_y)), (torch.cat(meta_x), torch.cat(meta_y))

    # ------------------------------------------------------------------ meta-test

    def meta_test(self) -> dict[str, Any]:
        from metarl.continual.evaluation import evaluate_omniglot, evaluate_sine

        if self.cfg.dataset == "sinusoid":
            result = evaluate_sine(self.network, self.cfg, self.methods)
        else:
            result = evaluate_omniglot(self.network, self.cfg, self.methods, self.data)
        # a resumed run may have changed these: the result says which it was computed with
        settings = {k: getattr(self.cfg, k) for k in self.metatest_only_settings}
        return {"dataset": self.cfg.dataset, "representation": self.representation, **result,
                "metatest_settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}}

    def format_metatest(self, result: dict[str, Any]) -> str:
        from metarl.continual.evaluation import format_table

        return format_table(result)

    def metatest_scalars(self, result: dict[str, Any]) -> dict[str, float]:
        out = {}
        for method, values in result["methods"].items():
            if result["dataset"] == "sinusoid":
                out[f"{method}/mse"] = values["mse"]["mean"]
            else:
                for n, entry in values["generalisation"].items():
                    out[f"{method}/generalisation_{n}"] = entry["mean"]
                    out[f"{method}/memorisation_{n}"] = values["memorisation"][n]["mean"]
        return out

    def write_artifacts(self, logdir: Path, result: dict[str, Any]) -> list[Path]:
        from metarl.continual.plots import plot_continual

        return [plot_continual([result], Path(logdir) / "continual.png")]

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])


def _cross_entropy_loss(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    features, labels = batch
    return F.cross_entropy(features @ params["weight"].T + params["bias"], labels)


def _mse_loss(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    features, targets = batch
    return F.mse_loss(features @ params["weight"].T + params["bias"], targets)
