"""The outer meta-training loop, written once for every learner.

An algorithm (MAML-TRPO, RL^2, a few-shot learner, ...) implements :class:`~metarl.algorithm.MetaAlgorithm`:
``meta_train_step`` samples a meta-batch of tasks, adapts on their support data and updates the
meta-parameters on the query data. :func:`run_meta_training` does everything around it: the
progress bar, TensorBoard scalars, non-finite checks, atomic checkpoints, ``--resume``, and the
final meta-test written to ``DIR/metatest.json``. Checkpointing, validation, logging and the progress
bar are callbacks (:mod:`metarl.callbacks`); a user's own go between them.

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

import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from metarl.callbacks import (METATEST_BEST_NAME, METATEST_NAME, BaseCallback, CallbackList, CheckpointCallback,
                              LoggingCallback, ProgressCallback, TrainingState, ValidationCallback)
from metarl.checkpoint import BEST_CHECKPOINT_NAME, CheckpointError, load_checkpoint, set_rng_state
from metarl.config import RunConfig, resume_conflicts
from metarl.errors import NonFiniteError, TrainingInterrupted, check_finite, check_validation_seed
from metarl.rundir import CONFIG_NAME, lock_run_dir, remove_stale_temporaries, write_json_atomic, write_yaml_atomic

__all__ = [
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


class Trainable(Protocol):
    """What the loop needs of a learner (:class:`metarl.algorithm.MetaAlgorithm` implements it)."""

    name: str
    metatest_only_settings: tuple[str, ...]
    supports_validation: bool

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]: ...
    def meta_test(self) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def restore(self, state: dict[str, Any], where: str) -> None: ...
    def config(self) -> dict[str, Any]: ...
    def validation_scores(self, n_tasks: int, seed: int) -> dict[str, float]: ...
    def format_metatest(self, result: Any) -> str: ...
    def write_artifacts(self, logdir: Path, result: Any) -> list[Path]: ...
    def metatest_scalars(self, result: Any) -> dict[str, float]: ...


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


def _run_setting(name: str, given: Any, algorithm: Trainable, fallback: Any) -> Any:
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
    algorithm: Trainable,
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
    callbacks: Sequence[BaseCallback] = (),
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
        callbacks: the user's :class:`~metarl.callbacks.BaseCallback` objects, called after logging and
            validation and before the checkpoint; one returning ``False`` stops the run there (checkpointed,
            then meta-tested).

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
    if eval_every and not algorithm.supports_validation:
        raise ValueError(f"{algorithm.name or type(algorithm).__name__} has no validation score; "
                         "run it without eval_every (--eval-every 0)")
    if eval_every:  # before training, not at the first score
        check_validation_seed(eval_seed, algorithm.config().get("metatest_seed"))
    user_callbacks = CallbackList(list(callbacks))  # checks their type before the run directory is touched
    threads = getattr(getattr(algorithm, "cfg", None), "threads", None)
    previous_threads = torch.get_num_threads()
    with lock_run_dir(logdir) as run_dir:
        remove_stale_temporaries(run_dir)
        if threads is not None:  # the run's own thread count, for the run only (curves depend on it)
            torch.set_num_threads(threads)
        try:
            state = _start(algorithm, run_dir, resume=resume, iterations=iterations, seed=seed,
                           checkpoint_every=checkpoint_every, eval_every=eval_every, eval_tasks=eval_tasks,
                           eval_seed=eval_seed, print_fn=print_fn)
            return _train_locked(state, CallbackList([
                LoggingCallback(), ValidationCallback(eval_every, eval_tasks, eval_seed), *user_callbacks.callbacks,
                CheckpointCallback(checkpoint_every), ProgressCallback(progress)]))
        finally:
            torch.set_num_threads(previous_threads)


def _start(algorithm: Trainable, logdir: Path, *, resume: bool, iterations: int, seed: int, checkpoint_every: int,
           eval_every: int, eval_tasks: int, eval_seed: int, print_fn: Any) -> TrainingState:
    """The run's state before its first meta-iteration: new, or restored from ``checkpoint.pt`` after the
    resume checks; ``config.yaml`` written."""
    config = {**algorithm.config(), "seed": seed, "iterations": iterations, "checkpoint_every": checkpoint_every,
              "eval_every": eval_every, "eval_tasks": eval_tasks, "eval_seed": eval_seed}
    config.pop("logdir", None)  # where a run lives is not one of its settings (a copied run dir still resumes)
    state = TrainingState(algorithm, logdir, config, iterations, seed, np.random.default_rng(seed), checkpoint_every,
                          resumed=resume, print_fn=print_fn,
                          evaluation={"every": eval_every, "tasks": eval_tasks, "seed": eval_seed,
                                      "best_score": None, "best_iteration": None})
    if resume:
        saved = load_checkpoint(state.checkpoint_path)
        conflicts = resume_conflicts(saved.get("config", {}), config, algorithm.metatest_only_settings)
        if conflicts:
            raise CheckpointError(f"cannot resume {state.checkpoint_path}: settings differ from the checkpoint's in "
                                  f"{conflicts}; rerun with the original settings or use a new --logdir")
        if iterations < int(saved["iteration"]):
            raise ValueError(f"{logdir} is at meta-iteration {saved['iteration']}: --iterations {iterations} would "
                             "end it before that; give at least that many (or leave --iterations out)")
        for key in ("algorithm", "rng", "torch_rng", "iteration", "samples"):
            if key not in saved:
                raise CheckpointError(f"cannot resume {state.checkpoint_path}: it has no {key!r} entry (damaged, or not "
                                      "written by metarl's training loop); start a new --logdir")
        algorithm.restore(saved["algorithm"], where=str(state.checkpoint_path))
        set_rng_state(saved["rng"], state.rng)
        torch.set_rng_state(saved["torch_rng"])
        state.iteration, state.samples = int(saved["iteration"]), int(saved["samples"])
        state.seconds_before = float(saved.get("train_seconds", 0.0))  # absent in checkpoints of older versions
        saved_eval = saved.get("evaluation")
        if saved_eval is not None and saved_eval["best_iteration"] is not None:
            if (saved_eval["tasks"], saved_eval["seed"]) != (eval_tasks, eval_seed):
                raise CheckpointError(
                    f"cannot resume {state.checkpoint_path}: its best checkpoint was chosen on {saved_eval['tasks']} "
                    f"validation tasks of seed {saved_eval['seed']}, not {eval_tasks} of seed {eval_seed}; "
                    "resume with the run's validation settings")
            state.evaluation = {**saved_eval, "every": eval_every}
    elif state.checkpoint_path.exists():
        raise CheckpointError(f"{logdir} already holds a checkpoint; pass --resume to continue it or choose a new "
                              "--logdir")
    write_yaml_atomic(logdir / CONFIG_NAME, config,
                      header=f"# Settings of this {algorithm.name} run, as resolved (presets, config file, flags).\n"
                             f"# Rerun them: metarl train --config {logdir / CONFIG_NAME} --logdir NEW_DIR\n")
    return state


def _record(state: TrainingState, metrics: dict[str, float]) -> None:
    """Count a finished meta-iteration, refusing non-finite metrics."""
    for key, value in metrics.items():
        if value is not None and not np.isfinite(float(value)):
            raise NonFiniteError(f"non-finite metric {key}={value} at meta-iteration {state.iteration}; the "
                                 "run was stopped (the last checkpoint is intact)")
    state.metrics = metrics
    state.samples += int(metrics.get("samples", 0))
    state.iteration += 1


def _train_locked(state: TrainingState, callbacks: CallbackList) -> dict[str, Any]:
    """Meta-train from ``state`` to its last iteration (or a callback's stop), then meta-test."""
    algorithm = state.algorithm
    try:
        callbacks.on_training_start(state)
        with _deferred_interrupt() as interrupt:
            while state.iteration < state.iterations and not state.stop:
                _record(state, algorithm.meta_train_step(state.rng))
                state.stop = interrupt["set"]
                callbacks.on_iteration_end(state)
                if (state.stop or interrupt["set"]) and state.checkpointed != state.iteration:
                    state.save_checkpoint()  # a Ctrl-C during the callbacks, or no checkpoint callback
                if interrupt["set"]:
                    raise TrainingInterrupted(state.logdir, state.iteration)
        if not state.checkpoint_path.exists():  # resumed at its end, or zero iterations
            state.save_checkpoint()
        state.result = {**algorithm.meta_test(), "algo": algorithm.name, "iterations": state.iteration,
                        "seed": state.seed, "train_seconds": state.train_seconds()}
        protocol = getattr(algorithm, "protocol_metatest", None)  # a benchmark's protocol (metatest_protocol)
        protocol_result = protocol() if protocol is not None else None
        if protocol_result is not None:
            state.result["protocol"] = protocol_result
        # the last state's meta-test is written before best.pt is read, so a damaged best.pt cannot lose it
        write_json_atomic(state.logdir / METATEST_NAME, state.result)
        algorithm.write_artifacts(state.logdir, state.result)
        callbacks.on_training_end(state)
        return state.result
    finally:
        callbacks.close()
