"""The outer meta-training loop, written once for every learner.

An algorithm (MAML-TRPO, RL^2, a few-shot learner, ...) implements :class:`MetaAlgorithm`:
``meta_train_step`` samples a meta-batch of tasks, adapts on their support data and updates the
meta-parameters on the query data. :func:`run_meta_training` does everything around it: the
progress bar, TensorBoard scalars, non-finite checks, atomic checkpoints, ``--resume``, and the
final meta-test written to ``DIR/metatest.json``.

Model selection (``eval_every``): every ``eval_every`` meta-iterations the loop scores the current
meta-parameters on held-out *validation* tasks (their own seed, never the meta-test's), logs the
scores under ``eval/`` and keeps the best-scoring state in ``DIR/best.pt``, as Stable-Baselines3's
``EvalCallback`` keeps ``best_model``. At the end the best state is meta-tested too
(``DIR/metatest_best.json``), next to the last state's ``metatest.json``. Long meta-RL runs can
peak and then decay; the validation tasks choose the checkpoint without looking at the test tasks.

Determinism contract: an algorithm draws all its randomness (tasks, episodes, action noise,
minibatch order) from the ``numpy.random.Generator`` handed to ``meta_train_step``. The loop
checkpoints that generator's state with the algorithm's own state, so a resumed run continues
the exact curve of an uninterrupted one.
"""

from __future__ import annotations

import abc
import copy
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from metarl.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from metarl.logger import Logger

__all__ = [
    "MetaAlgorithm",
    "NonFiniteError",
    "check_finite",
    "check_validation_seed",
    "run_meta_training",
    "write_json_atomic",
    "METATEST_NAME",
    "METATEST_BEST_NAME",
    "BEST_CHECKPOINT_NAME",
]

METATEST_NAME = "metatest.json"
METATEST_BEST_NAME = "metatest_best.json"
BEST_CHECKPOINT_NAME = "best.pt"


class NonFiniteError(FloatingPointError):
    """A loss, gradient, parameter or return became NaN or infinite; the message says where."""


def check_finite(value: Any, where: str) -> None:
    """Raise :class:`NonFiniteError` naming ``where`` if ``value`` (number, array or tensor) is not finite."""
    if isinstance(value, torch.Tensor):
        ok = bool(torch.isfinite(value).all())
    else:
        ok = bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
    if not ok:
        raise NonFiniteError(
            f"non-finite value in {where}; the run was stopped before it was applied "
            "(the last checkpoint is intact). Lower the learning rate / step size or check the task's rewards"
        )


def check_validation_seed(seed: int, metatest_seed: int | None) -> None:
    """Raise ``ValueError`` if the validation seed is the meta-test's (the best checkpoint would be chosen on
    the test tasks)."""
    if metatest_seed is not None and seed == metatest_seed:
        raise ValueError(f"the validation seed {seed} equals metatest_seed: choose another --eval-seed, "
                         "so the best checkpoint is not chosen on the test tasks")


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON via a temp file and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


class MetaAlgorithm(abc.ABC):
    """A meta-learner plugged into :func:`run_meta_training`."""

    #: short name used in logs and ``metatest.json`` (e.g. ``"maml-trpo"``)
    name: str = ""
    #: :meth:`config` keys that only affect :meth:`meta_test`: a resumed run may change them
    metatest_only_settings: tuple[str, ...] = ()

    @abc.abstractmethod
    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        """One meta-iteration; return scalar metrics.

        The metric ``"samples"`` (environment steps or examples consumed by this step) advances the
        TensorBoard x axis; other keys are logged as given (``train/`` prefix when un-namespaced).
        """

    @abc.abstractmethod
    def meta_test(self) -> dict[str, Any]:
        """Final evaluation on held-out tasks (fixed seed); a JSON-serialisable dict."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training (model, optimiser, baselines, counters)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The run's settings (JSON-serialisable); stored in checkpoints and logged as text."""

    def validation_scores(self, n_tasks: int, seed: int) -> dict[str, float]:
        """Scores of the current meta-parameters on ``n_tasks`` validation tasks drawn from ``seed``.

        Used by :func:`run_meta_training`'s ``eval_every`` to keep the best checkpoint. The key
        ``"score"`` is the one maximised; other keys are logged under ``eval/``. Must not draw from the
        training generator or torch's global RNG (the training curve stays the same with or without
        validation), and must refuse the meta-test's seed. Algorithms without it cannot use ``eval_every``.
        """
        raise NotImplementedError(f"{self.name or type(self).__name__} has no validation score")

    def format_metatest(self, result: Mapping[str, Any]) -> str:
        """Human-readable meta-test table printed at the end of training."""
        return json.dumps(result, indent=2)

    def metatest_scalars(self, result: Mapping[str, Any]) -> dict[str, float]:
        """Scalars from the meta-test result to log under ``metatest/``."""
        return {}


def _config_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any], also_ignore: Sequence[str] = ()
                     ) -> list[str]:
    """Settings whose values differ. A setting absent from ``saved`` was added to the library after the
    checkpoint was written; new settings default to the earlier behaviour, so it is not a mismatch."""
    ignore = {"iterations", "logdir", "resume", "progress", *also_ignore}
    keys = set(saved) - ignore
    return sorted(k for k in keys if saved.get(k) != current.get(k))


def run_meta_training(
    algorithm: MetaAlgorithm,
    *,
    iterations: int,
    seed: int,
    logdir: str | os.PathLike,
    resume: bool = False,
    checkpoint_every: int = 10,
    progress: bool = True,
    print_fn: Any = print,
    eval_every: int = 0,
    eval_tasks: int = 20,
    eval_seed: int = 4321,
) -> dict[str, Any]:
    """Meta-train ``algorithm`` for ``iterations`` meta-iterations, then meta-test it.

    Args:
        algorithm: the learner.
        iterations: total meta-iterations (a resumed run continues up to this number).
        seed: seeds the generator handed to every ``meta_train_step``.
        logdir: TensorBoard events, ``checkpoint.pt`` and ``metatest.json`` go here.
        resume: continue from ``logdir/checkpoint.pt`` (same config required).
        checkpoint_every: iterations between checkpoints (one is always written at the end).
        progress: show a tqdm progress bar.
        print_fn: where the final meta-test table goes (``None`` to stay quiet).
        eval_every: meta-iterations between validation scores (0: none). The best-scoring state goes
            to ``logdir/best.pt`` (with a checkpoint, so the two never disagree on resume) and is
            meta-tested at the end into ``logdir/metatest_best.json``.
        eval_tasks: validation tasks per score.
        eval_seed: seed of the validation tasks and episodes (must differ from the meta-test's).

    Returns:
        The meta-test result of the last state, also written to ``logdir/metatest.json``, with
        ``train_seconds``: the wall-clock seconds of meta-training (validation included), summed
        over resumed sessions (also logged as ``time/elapsed_seconds``); with ``eval_every``, ``best``
        summarises the best state's meta-test.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
    if not isinstance(checkpoint_every, int) or checkpoint_every <= 0:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    for name, value, low in (("eval_every", eval_every, 0), ("eval_tasks", eval_tasks, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if eval_every and type(algorithm).validation_scores is MetaAlgorithm.validation_scores:
        raise ValueError(f"{algorithm.name or type(algorithm).__name__} has no validation score; "
                         "run it without eval_every (--eval-every 0)")
    if eval_every:  # before training, not at the first score
        check_validation_seed(eval_seed, algorithm.config().get("metatest_seed"))
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    ckpt_path = logdir / CHECKPOINT_NAME
    best_path = logdir / BEST_CHECKPOINT_NAME
    rng = np.random.default_rng(seed)
    config = {**algorithm.config(), "seed": seed}
    start, samples, seconds_before = 0, 0, 0.0
    # validation: the settings and the best score so far (saved in every checkpoint)
    evaluation: dict[str, Any] = {"every": eval_every, "tasks": eval_tasks, "seed": eval_seed,
                                  "best_score": None, "best_iteration": None}
    if resume:
        state = load_checkpoint(ckpt_path)
        mismatch = _config_mismatch(state.get("config", {}), config, algorithm.metatest_only_settings)
        if mismatch:
            raise CheckpointError(
                f"cannot resume {ckpt_path}: settings differ from the checkpoint's in {mismatch}; "
                "rerun with the original settings or use a new --logdir"
            )
        algorithm.load_state_dict(state["algorithm"])
        set_rng_state(state["rng"], rng)
        torch.set_rng_state(state["torch_rng"])
        start, samples = int(state["iteration"]), int(state["samples"])
        seconds_before = float(state.get("train_seconds", 0.0))  # absent in checkpoints of older versions
        saved_eval = state.get("evaluation")
        if saved_eval is not None and saved_eval["best_iteration"] is not None:
            if (saved_eval["tasks"], saved_eval["seed"]) != (eval_tasks, eval_seed):
                raise CheckpointError(
                    f"cannot resume {ckpt_path}: its best checkpoint was chosen on {saved_eval['tasks']} validation "
                    f"tasks of seed {saved_eval['seed']}, not {eval_tasks} of seed {eval_seed}; "
                    "resume with the run's validation settings")
            evaluation = {**saved_eval, "every": eval_every}
    elif ckpt_path.exists():
        raise CheckpointError(
            f"{logdir} already holds a checkpoint; pass --resume to continue it or choose a new --logdir"
        )
    # events after the checkpoint (from the interrupted run) are dropped, so the resumed curve has no doubled points
    logger = Logger(logdir, purge_step=samples + 1 if resume else None)
    if not resume:
        logger.hparams(config)

    clock = time.perf_counter()

    def train_seconds() -> float:
        """Wall-clock seconds of meta-training so far, summed over resumed sessions (meta-test excluded)."""
        return seconds_before + time.perf_counter() - clock

    def checkpoint(iteration: int, path: Path = ckpt_path) -> None:
        save_checkpoint(path, {
            "algorithm": algorithm.state_dict(),
            "iteration": iteration,
            "target_iterations": iterations,  # `--resume` without `--iterations` continues to this
            "samples": samples,
            "train_seconds": train_seconds(),
            "rng": rng_state(rng),
            "torch_rng": torch.get_rng_state(),
            "config": config,
            "evaluation": dict(evaluation),
        })

    def validate(iteration: int) -> bool:
        """Score on the validation tasks; keep a new best in best.pt. True if it was a new best."""
        scores = algorithm.validation_scores(eval_tasks, eval_seed)
        for key, value in scores.items():
            if not math.isfinite(float(value)):
                raise NonFiniteError(f"non-finite validation score {key}={value} at meta-iteration {iteration}")
        logger.scalars({f"eval/{k}": v for k, v in scores.items()}, step=samples)
        best = evaluation["best_score"]
        if best is not None and scores["score"] <= best:
            return False
        evaluation.update(best_score=float(scores["score"]), best_iteration=iteration)
        checkpoint(iteration, best_path)
        return True

    def best_metatest() -> dict[str, Any]:
        """Meta-test the state in best.pt; the algorithm is left in its last state."""
        best_state = load_checkpoint(best_path)
        if best_state["iteration"] != evaluation["best_iteration"]:
            raise CheckpointError(f"{best_path} holds iteration {best_state['iteration']}, the run's checkpoint "
                                  f"names {evaluation['best_iteration']}; delete {best_path} and rerun the evaluation")
        last_state = copy.deepcopy(algorithm.state_dict())
        algorithm.load_state_dict(best_state["algorithm"])
        try:
            out = {**algorithm.meta_test(), "algo": algorithm.name, "iteration": best_state["iteration"],
                   "seed": seed, "train_seconds": best_state["train_seconds"],
                   "validation": {"score": evaluation["best_score"], "tasks": eval_tasks, "seed": eval_seed}}
        finally:
            algorithm.load_state_dict(last_state)
        write_json_atomic(logdir / METATEST_BEST_NAME, out)
        return out

    bar = tqdm(range(start, iterations), initial=start, total=iterations, disable=not progress,
               desc=algorithm.name, dynamic_ncols=True)
    try:
        for iteration in bar:
            metrics = algorithm.meta_train_step(rng)
            for key, value in metrics.items():
                if value is not None and not math.isfinite(float(value)):
                    raise NonFiniteError(f"non-finite metric {key}={value} at meta-iteration {iteration}")
            samples += int(metrics.get("samples", 0))
            logger.scalars({k: v for k, v in metrics.items() if k != "samples"}, step=samples)
            logger.scalars({"time/iterations": iteration + 1, "time/elapsed_seconds": train_seconds()}, step=samples)
            shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in metrics.items() if k.startswith("rollout/")}
            if shown:
                bar.set_postfix(shown, refresh=False)
            new_best = bool(eval_every) and (iteration + 1) % eval_every == 0 and validate(iteration + 1)
            if new_best or (iteration + 1) % checkpoint_every == 0 or iteration + 1 == iterations:
                checkpoint(iteration + 1)
        if start == iterations and not ckpt_path.exists():
            checkpoint(iterations)
        seconds = train_seconds()
        result = {**algorithm.meta_test(), "algo": algorithm.name, "iterations": iterations, "seed": seed,
                  "train_seconds": seconds}
        best_result = best_metatest() if evaluation["best_iteration"] is not None else None
        if best_result is not None:
            result["best"] = {"iteration": best_result["iteration"], "validation_score": evaluation["best_score"],
                              "metatest": algorithm.metatest_scalars(best_result), "file": METATEST_BEST_NAME}
        write_json_atomic(logdir / METATEST_NAME, result)
        logger.scalars({f"metatest/{k}": v for k, v in algorithm.metatest_scalars(result).items()}, step=samples)
        logger.text("metatest", "```\n" + algorithm.format_metatest(result) + "\n```")
        if print_fn is not None:
            print_fn(algorithm.format_metatest(result))
        if best_result is not None:
            logger.scalars({f"metatest_best/{k}": v for k, v in algorithm.metatest_scalars(best_result).items()},
                           step=samples)
            heading = (f"best validation checkpoint (iteration {best_result['iteration']}, "
                       f"validation score {evaluation['best_score']:.2f}):")
            logger.text("metatest_best", heading + "\n```\n" + algorithm.format_metatest(best_result) + "\n```")
            if print_fn is not None:
                print_fn(heading + "\n" + algorithm.format_metatest(best_result))
        return result
    finally:
        bar.close()
        logger.close()
