"""The outer meta-training loop, written once for every learner.

An algorithm (MAML-TRPO, RL^2, a few-shot learner, ...) implements :class:`~metarl.algorithm.MetaAlgorithm`:
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

import copy
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from metarl.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from metarl.algorithm import MetaAlgorithm, NonFiniteError, check_finite, check_validation_seed
from metarl.config import RUNTIME_SETTINGS, RunConfig
from metarl.logger import Logger
from metarl.rundir import CONFIG_NAME, lock_run_dir, remove_stale_temporaries, write_json_atomic, write_yaml_atomic

__all__ = [
    "MetaAlgorithm",
    "NonFiniteError",
    "TrainingInterrupted",
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


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; its state at the end of the last whole meta-iteration was checkpointed."""

    def __init__(self, logdir: Path, iteration: int):
        super().__init__(f"interrupted at meta-iteration {iteration}; continue with --resume {logdir}")
        self.logdir, self.iteration = logdir, iteration



def _config_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any], also_ignore: Sequence[str] = ()
                     ) -> list[str]:
    """Settings whose values differ. A setting absent from ``saved`` was added to the library after the
    checkpoint was written; new settings default to the earlier behaviour, so it is not a mismatch."""
    # validation cadence may change (a best checkpoint's own validation settings are checked separately)
    ignore = {*RUNTIME_SETTINGS, "resume", "progress", "eval_every", "eval_tasks", "eval_seed", *also_ignore}
    keys = set(saved) - ignore
    return sorted(k for k in keys if saved.get(k) != current.get(k))


@contextmanager
def _deferred_interrupt() -> Iterator[dict[str, bool]]:
    """Turn the first Ctrl-C into a flag the loop reads between meta-iterations; a second one stops at once."""
    flag = {"set": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag["set"]:
            raise KeyboardInterrupt
        flag["set"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_setting(name: str, given: Any, algorithm: MetaAlgorithm, fallback: Any) -> Any:
    """A loop setting: given as an argument, else the algorithm's config (a RunConfig), else ``fallback``."""
    if given is not None:
        return given
    cfg = getattr(algorithm, "cfg", None)
    if isinstance(cfg, RunConfig):
        return getattr(cfg, name)
    if fallback is None:
        raise ValueError(f"run_meta_training needs {name}= for {type(algorithm).__name__} (it has no RunConfig)")
    return fallback


def run_meta_training(
    algorithm: MetaAlgorithm,
    *,
    iterations: int | None = None,
    seed: int | None = None,
    logdir: str | os.PathLike | None = None,
    resume: bool = False,
    checkpoint_every: int | None = None,
    progress: bool = True,
    print_fn: Any = print,
    eval_every: int | None = None,
    eval_tasks: int | None = None,
    eval_seed: int | None = None,
) -> dict[str, Any]:
    """Meta-train ``algorithm`` for ``iterations`` meta-iterations, then meta-test it.

    Settings left at ``None`` come from the algorithm's :class:`~metarl.config.RunConfig` (``algorithm.cfg``).

    Args:
        algorithm: the learner.
        iterations: total meta-iterations (a resumed run continues up to this number).
        seed: seeds the generator handed to every ``meta_train_step``.
        logdir: TensorBoard events, ``checkpoint.pt``, ``config.yaml`` and ``metatest.json`` go here.
        resume: continue from ``logdir/checkpoint.pt`` (same settings required, except the runtime ones:
            iterations, checkpoint cadence, threads, and the algorithm's meta-test-only settings).
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

    Raises:
        TrainingInterrupted: Ctrl-C; the state after the last whole meta-iteration is checkpointed first.
        NonFiniteError: a metric, loss or score became NaN/inf (the last checkpoint is intact).
    """
    iterations = _run_setting("iterations", iterations, algorithm, None)
    seed = _run_setting("seed", seed, algorithm, None)
    checkpoint_every = _run_setting("checkpoint_every", checkpoint_every, algorithm, 10)
    eval_every = _run_setting("eval_every", eval_every, algorithm, 0)
    eval_tasks = _run_setting("eval_tasks", eval_tasks, algorithm, 20)
    eval_seed = _run_setting("eval_seed", eval_seed, algorithm, 4321)
    if logdir is None:
        logdir = getattr(getattr(algorithm, "cfg", None), "logdir", None)
        if logdir is None:
            raise ValueError("run_meta_training needs a logdir")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every <= 0:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    for name, value, low in (("eval_every", eval_every, 0), ("eval_tasks", eval_tasks, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if eval_every and type(algorithm).validation_scores is MetaAlgorithm.validation_scores:
        raise ValueError(f"{algorithm.name or type(algorithm).__name__} has no validation score; "
                         "run it without eval_every (--eval-every 0)")
    if eval_every:  # before training, not at the first score
        check_validation_seed(eval_seed, algorithm.config().get("metatest_seed"))
    threads = getattr(getattr(algorithm, "cfg", None), "threads", None)
    previous_threads = torch.get_num_threads()
    with lock_run_dir(logdir) as run_dir:
        remove_stale_temporaries(run_dir)
        if threads is not None:  # the run's own thread count, for the run only (curves depend on it)
            torch.set_num_threads(threads)
        try:
            return _train_locked(algorithm, iterations=iterations, seed=seed, logdir=run_dir, resume=resume,
                                 checkpoint_every=checkpoint_every, progress=progress, print_fn=print_fn,
                                 eval_every=eval_every, eval_tasks=eval_tasks, eval_seed=eval_seed)
        finally:
            torch.set_num_threads(previous_threads)


def _train_locked(algorithm: MetaAlgorithm, *, iterations: int, seed: int, logdir: Path, resume: bool,
                  checkpoint_every: int, progress: bool, print_fn: Any, eval_every: int, eval_tasks: int,
                  eval_seed: int) -> dict[str, Any]:
    ckpt_path = logdir / CHECKPOINT_NAME
    best_path = logdir / BEST_CHECKPOINT_NAME
    rng = np.random.default_rng(seed)
    config = {**algorithm.config(), "seed": seed, "iterations": iterations, "checkpoint_every": checkpoint_every,
              "eval_every": eval_every, "eval_tasks": eval_tasks, "eval_seed": eval_seed}
    config.pop("logdir", None)  # where a run lives is not one of its settings (a copied run dir still resumes)
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
        if iterations < int(state["iteration"]):
            raise ValueError(f"{logdir} is at meta-iteration {state['iteration']}: --iterations {iterations} would "
                             "end it before that; give at least that many (or leave --iterations out)")
        algorithm.restore(state["algorithm"], where=str(ckpt_path))
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
    write_yaml_atomic(logdir / CONFIG_NAME, config,
                      header=f"# Settings of this {algorithm.name} run, as resolved (presets, config file, flags).\n"
                             f"# Rerun them: metarl train --config {logdir / CONFIG_NAME} --logdir NEW_DIR\n")
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
        score = float(scores["score"])
        if math.isnan(score):
            raise NonFiniteError(f"validation score is NaN at meta-iteration {iteration}")
        # -inf: the adapted learner diverged on some validation task (a measurement, not a training fault)
        logger.scalars({f"eval/{k}": v for k, v in scores.items() if math.isfinite(float(v))}, step=samples)
        best = evaluation["best_score"]
        if score == float("-inf") or (best is not None and score <= best):
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
        with _deferred_interrupt() as interrupt:
            for iteration in bar:
                metrics = algorithm.meta_train_step(rng)
                for key, value in metrics.items():
                    if value is not None and not math.isfinite(float(value)):
                        raise NonFiniteError(f"non-finite metric {key}={value} at meta-iteration {iteration}; the "
                                             "run was stopped (the last checkpoint is intact)")
                samples += int(metrics.get("samples", 0))
                logger.scalars({k: v for k, v in metrics.items() if k != "samples"}, step=samples)
                logger.scalars({"time/iterations": iteration + 1, "time/elapsed_seconds": train_seconds()},
                               step=samples)
                shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in metrics.items() if k.startswith("rollout/")}
                if shown:
                    bar.set_postfix(shown, refresh=False)
                new_best = bool(eval_every) and (iteration + 1) % eval_every == 0 and validate(iteration + 1)
                if new_best or (iteration + 1) % checkpoint_every == 0 or iteration + 1 == iterations \
                        or interrupt["set"]:
                    checkpoint(iteration + 1)
                if interrupt["set"]:
                    raise TrainingInterrupted(logdir, iteration + 1)
        if start == iterations and not ckpt_path.exists():
            checkpoint(iterations)
        seconds = train_seconds()
        result = {**algorithm.meta_test(), "algo": algorithm.name, "iterations": iterations, "seed": seed,
                  "train_seconds": seconds}
        # the last state's meta-test is written before best.pt is read, so a damaged best.pt cannot lose it
        write_json_atomic(logdir / METATEST_NAME, result)
        algorithm.write_artifacts(logdir, result)
        logger.scalars({f"metatest/{k}": v for k, v in algorithm.metatest_scalars(result).items()}, step=samples)
        logger.text("metatest", "```\n" + algorithm.format_metatest(result) + "\n```")
        if print_fn is not None:
            print_fn(algorithm.format_metatest(result))
        if evaluation["best_iteration"] is not None:
            best_result = best_metatest()
            result["best"] = {"iteration": best_result["iteration"], "validation_score": evaluation["best_score"],
                              "metatest": algorithm.metatest_scalars(best_result), "file": METATEST_BEST_NAME}
            write_json_atomic(logdir / METATEST_NAME, result)
            logger.scalars({f"metatest_best/{k}": v for k, v in algorithm.metatest_scalars(best_result).items()},
                           step=samples)
            heading = (f"best validation checkpoint (iteration {best_result['iteration']}, "
                       f"validation score {evaluation['best_score']:.4g}):")
            logger.text("metatest_best", heading + "\n```\n" + algorithm.format_metatest(best_result) + "\n```")
            if print_fn is not None:
                print_fn(heading + "\n" + algorithm.format_metatest(best_result))
        return result
    finally:
        bar.close()
        logger.close()
