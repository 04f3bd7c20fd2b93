"""Callbacks of the outer loop: what happens around each meta-iteration, in Stable-Baselines3's shape.

The loop (:func:`metarl.training.run_meta_training`) runs ``meta_train_step`` and hands a
:class:`TrainingState` to its callbacks: ``on_training_start``, ``on_iteration_end`` (return ``False``
to stop the run: it is checkpointed, then meta-tested), ``on_training_end`` (after the meta-test) and
``close`` (always, also after an error). Its own work is four callbacks, in this order:

- :class:`LoggingCallback`: TensorBoard scalars (metrics, time, meta-test) and the settings;
- :class:`ValidationCallback` (with ``eval_every``): validation scores, the best state in ``best.pt``,
  and its meta-test (``metatest_best.json``);
- the user's callbacks (``metarl.train(..., callbacks=[...])``, ``algorithm.learn(logdir, callbacks=[...])``);
- :class:`CheckpointCallback`: ``checkpoint.pt`` every ``checkpoint_every`` iterations, at a new best,
  at the end and when the run stops early;
- :class:`ProgressCallback`: the progress bar.

A callback of one's own::

    class StopAtReturn(metarl.BaseCallback):
        def on_iteration_end(self, state):
            return state.metrics.get("rollout/return_after_adaptation", -1e9) < -5.0

    metarl.train("maml-trpo", "metarl/Navigation2D-v0", callbacks=[StopAtReturn()])
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from metarl.checkpoint import BEST_CHECKPOINT_NAME, CHECKPOINT_NAME, CheckpointError, load_checkpoint, rng_state, \
    save_checkpoint
from metarl.errors import NonFiniteError
from metarl.logger import Logger
from metarl.protocols import format_protocol
from metarl.rundir import write_json_atomic

__all__ = ["TrainingState", "BaseCallback", "CallbackList", "LoggingCallback", "ValidationCallback",
           "CheckpointCallback", "ProgressCallback", "METATEST_NAME", "METATEST_BEST_NAME"]

METATEST_NAME = "metatest.json"
METATEST_BEST_NAME = "metatest_best.json"


@dataclass
class TrainingState:
    """What the loop knows of a run, handed to every callback.

    Attributes:
        algorithm: the learner being trained.
        logdir: the run directory (locked for this process).
        config: the run's settings as saved in checkpoints and ``config.yaml``.
        iterations: the meta-iteration the run ends at.
        seed: seeds ``rng``.
        rng: the generator every ``meta_train_step`` draws from (checkpointed).
        iteration: meta-iterations done so far.
        samples: environment steps (or examples) consumed so far: the TensorBoard x axis.
        metrics: the last meta-iteration's metrics.
        evaluation: validation settings and the best score so far (saved in every checkpoint).
        resumed: whether the run continues a checkpoint.
        new_best: the last validation found a new best (``best.pt`` was written).
        stop: the run stops after this iteration (a callback returned ``False``, or Ctrl-C).
        result: the meta-test result, once there is one.
        logger: the TensorBoard writer (set by :class:`LoggingCallback`).
        print_fn: where tables go (``None``: quiet).
    """

    algorithm: Any
    logdir: Path
    config: dict[str, Any]
    iterations: int
    seed: int
    rng: np.random.Generator
    checkpoint_every: int
    iteration: int = 0
    samples: int = 0
    seconds_before: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    new_best: bool = False
    stop: bool = False
    result: dict[str, Any] | None = None
    logger: Logger | None = None
    print_fn: Any = print
    clock: float = field(default_factory=time.perf_counter)
    #: the iteration ``checkpoint.pt`` was last written at (in this session)
    checkpointed: int | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.logdir / CHECKPOINT_NAME

    @property
    def best_path(self) -> Path:
        return self.logdir / BEST_CHECKPOINT_NAME

    def train_seconds(self) -> float:
        """Wall-clock seconds of meta-training so far, summed over resumed sessions (meta-test excluded)."""
        return self.seconds_before + time.perf_counter() - self.clock

    def save_checkpoint(self, path: Path | None = None) -> None:
        """Write the run's state after ``iteration`` meta-iterations to ``path`` (default ``checkpoint.pt``)."""
        if path is None:
            self.checkpointed = self.iteration
        save_checkpoint(path or self.checkpoint_path, {
            "algorithm": self.algorithm.state_dict(),
            "iteration": self.iteration,
            "target_iterations": self.iterations,  # `--resume` without `--iterations` continues to this
            "samples": self.samples,
            "train_seconds": self.train_seconds(),
            "rng": rng_state(self.rng),
            "torch_rng": torch.get_rng_state(),
            "config": self.config,
            "evaluation": dict(self.evaluation),
        })


class BaseCallback:
    """A callback of the outer loop (override what you need; every method has a do-nothing default)."""

    def on_training_start(self, state: TrainingState) -> None:
        """Before the first meta-iteration of this session (after a resume's state is restored)."""

    def on_iteration_end(self, state: TrainingState) -> bool:
        """After each meta-iteration (``state.metrics`` holds its metrics); ``False`` stops the run."""
        return True

    def on_training_end(self, state: TrainingState) -> None:
        """After the meta-test (``state.result``) was written to ``metatest.json``."""

    def close(self) -> None:
        """Release what the callback holds; called whenever the run ends, also after an error."""


class CallbackList(BaseCallback):
    """Calls its callbacks in order; every callback sees every iteration, and ``state.stop`` tells the later
    ones that an earlier one asked to stop."""

    def __init__(self, callbacks: Sequence[BaseCallback]):
        for cb in callbacks:
            if not isinstance(cb, BaseCallback):
                raise TypeError(f"callbacks must be metarl.BaseCallback objects, got {type(cb).__name__}")
        self.callbacks = list(callbacks)

    def on_training_start(self, state: TrainingState) -> None:
        for cb in self.callbacks:
            cb.on_training_start(state)

    def on_iteration_end(self, state: TrainingState) -> bool:
        for cb in self.callbacks:
            if cb.on_iteration_end(state) is False:
                state.stop = True
        return not state.stop

    def on_training_end(self, state: TrainingState) -> None:
        for cb in self.callbacks:
            cb.on_training_end(state)

    def close(self) -> None:
        for cb in self.callbacks:
            cb.close()


class LoggingCallback(BaseCallback):
    """TensorBoard: the settings once, each iteration's metrics and ``time/`` scalars, the meta-test's scalars
    and table (also printed)."""

    logger: Logger | None = None

    def on_training_start(self, state: TrainingState) -> None:
        # events after the checkpoint (from the interrupted run) are dropped, so the resumed curve has no doubled points
        self.logger = state.logger = Logger(state.logdir, purge_step=state.samples + 1 if state.resumed else None)
        if not state.resumed:
            state.logger.hparams(state.config)

    def on_iteration_end(self, state: TrainingState) -> bool:
        assert state.logger is not None
        state.logger.scalars({k: v for k, v in state.metrics.items() if k != "samples"}, step=state.samples)
        state.logger.scalars({"time/iterations": state.iteration, "time/elapsed_seconds": state.train_seconds()},
                             step=state.samples)
        return True

    def on_training_end(self, state: TrainingState) -> None:
        assert state.logger is not None and state.result is not None
        algorithm = state.algorithm
        state.logger.scalars({f"metatest/{k}": v for k, v in algorithm.metatest_scalars(state.result).items()},
                             step=state.samples)
        table = algorithm.format_metatest(state.result)
        protocol = state.result.get("protocol")
        if protocol:  # a benchmark's protocol ran too (metarl.protocols)
            state.logger.scalars({f"metatest/{protocol['protocol']}_success_rate": protocol["success_rate"]},
                                 step=state.samples)
            table = table + "\n" + format_protocol(protocol)
        state.logger.text("metatest", "```\n" + table + "\n```")
        if state.print_fn is not None:
            state.print_fn(table)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()


class ValidationCallback(BaseCallback):
    """Model selection: every ``every`` meta-iterations, score the current state on the validation tasks
    (``eval/`` scalars) and keep the best in ``best.pt``; at the end, meta-test it into
    ``metatest_best.json`` and summarise it under ``best`` in ``metatest.json``."""

    def __init__(self, every: int, tasks: int, seed: int):
        self.every, self.tasks, self.seed = every, tasks, seed

    def on_iteration_end(self, state: TrainingState) -> bool:
        state.new_best = False
        if not self.every or state.iteration % self.every:
            return True
        scores = state.algorithm.validation_scores(self.tasks, self.seed)
        score = float(scores["score"])
        if math.isnan(score):
            raise NonFiniteError(f"validation score is NaN at meta-iteration {state.iteration}")
        # -inf: the adapted learner diverged on some validation task (a measurement, not a training fault)
        assert state.logger is not None
        state.logger.scalars({f"eval/{k}": v for k, v in scores.items() if math.isfinite(float(v))}, step=state.samples)
        best = state.evaluation["best_score"]
        if score == float("-inf") or (best is not None and score <= best):
            return True
        state.evaluation.update(best_score=score, best_iteration=state.iteration)
        state.save_checkpoint(state.best_path)
        state.new_best = True
        return True

    def on_training_end(self, state: TrainingState) -> None:
        evaluation, algorithm = state.evaluation, state.algorithm
        if evaluation["best_iteration"] is None:
            return
        best_state = load_checkpoint(state.best_path)
        if best_state["iteration"] != evaluation["best_iteration"]:
            raise CheckpointError(f"{state.best_path} holds iteration {best_state['iteration']}, the run's checkpoint "
                                  f"names {evaluation['best_iteration']}; delete {state.best_path} and rerun the "
                                  "evaluation")
        last_state = copy.deepcopy(algorithm.state_dict())
        algorithm.load_state_dict(best_state["algorithm"])
        try:
            best = {**algorithm.meta_test(), "algo": algorithm.name, "iteration": best_state["iteration"],
                    "seed": state.seed, "train_seconds": best_state["train_seconds"],
                    "validation": {"score": evaluation["best_score"], "tasks": self.tasks, "seed": self.seed}}
        finally:
            algorithm.load_state_dict(last_state)
        write_json_atomic(state.logdir / METATEST_BEST_NAME, best)
        assert state.result is not None and state.logger is not None
        state.result["best"] = {"iteration": best["iteration"], "validation_score": evaluation["best_score"],
                                "metatest": algorithm.metatest_scalars(best), "file": METATEST_BEST_NAME}
        write_json_atomic(state.logdir / METATEST_NAME, state.result)
        state.logger.scalars({f"metatest_best/{k}": v for k, v in algorithm.metatest_scalars(best).items()},
                             step=state.samples)
        heading = (f"best validation checkpoint (iteration {best['iteration']}, "
                   f"validation score {evaluation['best_score']:.4g}):")
        table = algorithm.format_metatest(best)
        state.logger.text("metatest_best", heading + "\n```\n" + table + "\n```")
        if state.print_fn is not None:
            state.print_fn(heading + "\n" + table)


class CheckpointCallback(BaseCallback):
    """``checkpoint.pt`` every ``every`` meta-iterations, after a new best (so ``best.pt`` and the checkpoint
    never disagree on resume), at the last iteration and when the run stops early."""

    def __init__(self, every: int):
        self.every = every

    def on_iteration_end(self, state: TrainingState) -> bool:
        if state.new_best or state.iteration % self.every == 0 or state.iteration == state.iterations or state.stop:
            state.save_checkpoint()
        return True


class ProgressCallback(BaseCallback):
    """A tqdm progress bar over the run's meta-iterations, showing the ``rollout/`` metrics."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar: Any = None

    def on_training_start(self, state: TrainingState) -> None:
        self.bar = tqdm(total=state.iterations, initial=state.iteration, disable=not self.enabled,
                        desc=state.algorithm.name, dynamic_ncols=True)

    def on_iteration_end(self, state: TrainingState) -> bool:
        shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in state.metrics.items() if k.startswith("rollout/")}
        if shown:
            self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)
        return True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
