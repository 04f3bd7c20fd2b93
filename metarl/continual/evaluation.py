"""The continual meta-test: every method on exactly the same streams, with its online learning rate chosen
on streams that never touch the test data.

Omniglot (class-incremental): for each stream length ``N`` and method, the learning rate is the one of
``lr_candidates`` with the best held-out accuracy on ``lr_streams`` streams of the *training* alphabets'
characters (their held-out drawings were never used in training). Then ``metatest_streams`` streams of
``N`` classes of the test alphabets (the same streams, in the same order, for every method): each class's
stream drawings shown once, class after class; the accuracy on those drawings (memorisation) and on each
class's other drawings (generalisation), over all ``N`` classes, with 95% intervals over streams.

Sine: ``sine_functions`` functions learned one after another, ``sine_batches`` batches of
``batch_size`` points each; the MSE over the functions learned so far on 100 fresh points per function,
after each function and after the whole sequence (the headline); the learning rate is chosen on
sequences drawn from another seed.

Methods (each a :class:`~metarl.continual.learner.ContinualLearner`): ``oml``/``pretrain`` learn the PLN
online on the frozen representation; ``oml-er`` adds replay from a reservoir memory; ``finetune`` learns
the whole network online; ``er`` adds replay to it; ``iid`` learns the PLN on the frozen representation
offline, ``iid_epochs`` shuffled passes over the stream's data (the upper reference).

A learning rate under which a learner's loss becomes non-finite scores 0 accuracy (infinite MSE), so the
choice passes it over; the results of the chosen rate are reported as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from metarl.continual.config import ContinualConfig
from metarl.continual.data import ClassSet, SineFunctions, class_streams
from metarl.continual.learner import ContinualLearner
from metarl.continual.memory import EpisodicMemory
from metarl.continual.networks import ContinualNetwork
from metarl.fewshot.data import mean_and_ci95

__all__ = ["evaluate_omniglot", "evaluate_sine", "make_learner", "format_table", "TRAINS_RLN", "REPLAYS"]

#: methods that learn the whole network online (the others freeze the representation)
TRAINS_RLN = ("finetune", "er")
#: methods that replay from an episodic memory
REPLAYS = ("er", "oml-er")
_TEST_POINTS = 100
_CHUNK = 512


def make_learner(network: ContinualNetwork, method: str, lr: float, config: ContinualConfig, seed: int, *,
                 on_features: bool = False, preprocess: Any = None) -> ContinualLearner:
    """The online learner of ``method`` on ``network``'s representation.

    Args:
        on_features: the inputs will be the frozen representation's features, computed beforehand
            (the evaluation's shortcut for the methods that freeze it: same numbers, less compute).
    """
    regression = config.dataset == "sinusoid"
    train_rln = method in TRAINS_RLN
    rln: nn.Module = nn.Identity() if on_features and not train_rln else copy.deepcopy(network.rln)
    memory = EpisodicMemory(config.memory_capacity, np.random.default_rng([seed, 1])) if method in REPLAYS else None
    return ContinualLearner(rln, network.features, task="regression" if regression else "classification", lr=lr,
                            optimizer=config.online_optimizer, train_rln=train_rln, memory=memory,
                            replay_batch=config.replay_batch, pln=network.pln if regression else None,
                            preprocess=preprocess, seed=seed, method=method)


@torch.no_grad()
def _features(network: ContinualNetwork, inputs: torch.Tensor) -> torch.Tensor:
    return torch.cat([network.rln(inputs[i:i + _CHUNK]) for i in range(0, len(inputs), _CHUNK)])


# --------------------------------------------------------------------------------------------- Omniglot


def _omniglot_stream(network: ContinualNetwork, method: str, lr: float, config: ContinualConfig, data: ClassSet,
                     inputs: torch.Tensor, classes: np.ndarray, seed: int) -> tuple[float, float]:
    """(memorisation, generalisation) accuracy of ``method`` after one single-pass stream of ``classes``; a
    learner whose loss diverges (too large a learning rate) scores 0."""
    try:
        return _omniglot_stream_accuracy(network, method, lr, config, data, inputs, classes, seed)
    except FloatingPointError:
        return 0.0, 0.0


def _omniglot_stream_accuracy(network: ContinualNetwork, method: str, lr: float, config: ContinualConfig,
                              data: ClassSet, inputs: torch.Tensor, classes: np.ndarray, seed: int
                              ) -> tuple[float, float]:
    learner = make_learner(network, method, lr, config, seed, on_features=method not in TRAINS_RLN)
    stream = np.concatenate([data.stream[c] for c in classes])
    held_out = np.concatenate([data.held_out[c] for c in classes])
    labels = data.labels.numpy()
    if method == "iid":
        learner.fit_offline(inputs[stream], labels[stream], epochs=config.iid_epochs, batch_size=config.batch_size,
                            rng=np.random.default_rng([seed, 2]))
    else:
        for i in stream:
            learner.learn(inputs[i:i + 1], [int(labels[i])])
    memorised = float(np.mean(learner.predict(inputs[stream]) == labels[stream]))
    generalised = float(np.mean(learner.predict(inputs[held_out]) == labels[held_out]))
    return memorised, generalised


def evaluate_omniglot(network: ContinualNetwork, config: ContinualConfig, methods: Sequence[str],
                      data: dict[str, ClassSet]) -> dict[str, Any]:
    """The class-incremental Omniglot meta-test of ``methods`` (module docstring)."""
    network.eval()
    sets = {name: data[name] for name in ("select", "test")}
    features = {name: _features(network, s.images) for name, s in sets.items()}
    out: dict[str, Any] = {"stream_lengths": list(config.stream_lengths), "streams": config.metatest_streams,
                           "methods": {}}
    for method in methods:
        inputs = {name: (sets[name].images if method in TRAINS_RLN else features[name]) for name in sets}
        entry: dict[str, Any] = {"lr": {}, "memorisation": {}, "generalisation": {}, "lr_search": {}}
        for length in config.stream_lengths:
            key = str(length)
            select_streams = class_streams(sets["select"].num_classes, length, config.lr_streams,
                                           np.random.default_rng([config.metatest_seed, 1, length]))
            scores = {}
            for lr in config.lr_candidates:
                scores[lr] = float(np.mean([
                    _omniglot_stream(network, method, lr, config, sets["select"], inputs["select"], classes,
                                     seed=config.metatest_seed + i)[1]
                    for i, classes in enumerate(select_streams)]))
            best = max(config.lr_candidates, key=lambda lr: scores[lr])
            test_streams = class_streams(sets["test"].num_classes, length, config.metatest_streams,
                                         np.random.default_rng([config.metatest_seed, 0, length]))
            results = np.array([_omniglot_stream(network, method, best, config, sets["test"], inputs["test"], classes,
                                                 seed=config.metatest_seed + i)
                                for i, classes in enumerate(test_streams)])
            entry["lr"][key] = best
            entry["lr_search"][key] = {str(lr): score for lr, score in scores.items()}
            for column, name in enumerate(("memorisation", "generalisation")):
                mean, ci = mean_and_ci95(results[:, column])
                entry[name][key] = {"mean": mean, "ci95": ci}
        out["methods"][method] = entry
    return out


# --------------------------------------------------------------------------------------------- sine


def _sine_sequence(sine: SineFunctions, config: ContinualConfig, rng: np.random.Generator
                   ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    """(stream batches, function after function; test points per function) of one sequence."""
    amplitudes, phases = sine.sample(config.sine_functions, rng)
    stream, test = [], []
    for index, (a, p) in enumerate(zip(amplitudes, phases)):
        stream += [sine.points(a, p, index, config.batch_size, rng) for _ in range(config.sine_batches)]
        test.append(sine.points(a, p, index, _TEST_POINTS, rng))
    return stream, test


def _sine_run(network: ContinualNetwork, method: str, lr: float, config: ContinualConfig, seed: int,
              sequence: tuple[list, list]) -> list[float]:
    """MSE over the functions learned so far, after each function of one sequence; from the function where a
    learner's loss diverges (too large a learning rate) on, the MSE is infinite."""
    curve: list[float] = []
    try:
        _sine_curve(network, method, lr, config, seed, sequence, curve)
    except FloatingPointError:
        curve += [float("inf")] * (config.sine_functions - len(curve))
    return curve


def _sine_curve(network: ContinualNetwork, method: str, lr: float, config: ContinualConfig, seed: int,
                sequence: tuple[list, list], curve: list[float]) -> None:
    stream, test = sequence
    frozen = method not in TRAINS_RLN
    encode = (lambda x: _features(network, x)) if frozen else (lambda x: x)
    learner = make_learner(network, method, lr, config, seed, on_features=frozen)
    test_inputs = [encode(x) for x, _ in test]
    per_function = config.sine_batches
    if method == "iid":
        x = encode(torch.cat([x for x, _ in stream]))
        y = torch.cat([y for _, y in stream])
        learner.fit_offline(x, y, epochs=config.iid_epochs, batch_size=config.batch_size,
                            rng=np.random.default_rng([seed, 2]))
        errors = [float(((learner.outputs(xt) - yt) ** 2).mean()) for xt, (_, yt) in zip(test_inputs, test)]
        curve += [float(np.mean(errors[: k + 1])) for k in range(len(errors))]
        return
    for k in range(config.sine_functions):
        for x, y in stream[k * per_function:(k + 1) * per_function]:
            learner.learn(encode(x), y)
        errors = [float(((learner.outputs(xt) - yt) ** 2).mean())
                  for xt, (_, yt) in zip(test_inputs[: k + 1], test[: k + 1])]
        curve.append(float(np.mean(errors)))


def evaluate_sine(network: ContinualNetwork, config: ContinualConfig, methods: Sequence[str]) -> dict[str, Any]:
    """OML's incremental sine meta-test of ``methods`` (module docstring)."""
    network.eval()
    sine = SineFunctions(config.sine_functions)
    test = [_sine_sequence(sine, config, np.random.default_rng([config.metatest_seed, 0, i]))
            for i in range(config.metatest_streams)]
    select = [_sine_sequence(sine, config, np.random.default_rng([config.metatest_seed, 1, i]))
              for i in range(config.lr_streams)]
    out: dict[str, Any] = {"functions": config.sine_functions, "streams": config.metatest_streams, "methods": {}}
    for method in methods:
        scores = {lr: float(np.mean([_sine_run(network, method, lr, config, config.metatest_seed + i, seq)[-1]
                                     for i, seq in enumerate(select)]))
                  for lr in config.lr_candidates}
        finite = {lr: s for lr, s in scores.items() if np.isfinite(s)}
        best = min(finite, key=lambda lr: finite[lr]) if finite else min(config.lr_candidates)
        curves = np.array([_sine_run(network, method, best, config, config.metatest_seed + i, seq)
                           for i, seq in enumerate(test)])
        mean, ci = mean_and_ci95(curves[:, -1])
        finite = np.isfinite(curves[:, -1])
        out["methods"][method] = {
            "lr": best, "lr_search": {str(lr): s for lr, s in scores.items()}, "mse": {"mean": mean, "ci95": ci},
            "diverged": int((~finite).sum()),
            "mse_converged": dict(zip(("mean", "ci95"), mean_and_ci95(curves[finite, -1]))) if finite.any() else None,
            # the curve over the sequences that did not diverge (all of them, unless "diverged" says otherwise)
            "mse_by_functions": {str(k + 1): dict(zip(("mean", "ci95"), mean_and_ci95(curves[finite if finite.any()
                                                                                            else slice(None), k])))
                                 for k in range(curves.shape[1])}}
    return out


# --------------------------------------------------------------------------------------------- display


def format_table(result: dict[str, Any]) -> str:
    """The meta-test as a plain-text table (one row per method)."""
    methods = result["methods"]
    if result["dataset"] == "sinusoid":
        lines = [f"incremental sine, {result['functions']} functions, {result['streams']} sequences "
                 "(MSE over all functions after the whole sequence, 95% interval)",
                 f"{'method':10s} {'lr':>8s} {'MSE':>16s}"]
        for method, values in methods.items():
            line = f"{method:10s} {values['lr']:8.2g} {values['mse']['mean']:8.3f} +- {values['mse']['ci95']:.3f}"
            if values.get("diverged") and values.get("mse_converged"):
                line += (f"   ({values['diverged']}/{result['streams']} sequences diverged; the others "
                         f"{values['mse_converged']['mean']:.3f})")
            lines.append(line)
        return "\n".join(lines)
    lengths = [str(n) for n in result["stream_lengths"]]
    lines = [f"class-incremental Omniglot, {result['streams']} streams per length "
             "(accuracy on held-out drawings / on the streamed drawings, 95% interval)",
             f"{'method':10s} " + " ".join(f"{'N=' + n:>22s}" for n in lengths)]
    for method, values in methods.items():
        cells = [f"{values['generalisation'][n]['mean']:.3f}+-{values['generalisation'][n]['ci95']:.3f} / "
                 f"{values['memorisation'][n]['mean']:.3f}" for n in lengths]
        lines.append(f"{method:10s} " + " ".join(f"{c:>22s}" for c in cells))
    return "\n".join(lines)
