"""The interface every meta-learner implements (:class:`MetaAlgorithm`): the leaf of the package's layers.

An algorithm (MAML-TRPO, RL^2, a few-shot learner, ...) implements ``meta_train_step``, ``meta_test``,
``state_dict``/``load_state_dict`` and, for model selection, ``validation_scores``; the outer loop
(:func:`metarl.training.run_meta_training`, reached through :meth:`MetaAlgorithm.learn`) does everything
around them. Meta-RL algorithms add the sampling methods of :class:`metarl.meta_rl.MetaRLAlgorithm`;
few-shot and continual learners do not carry them. This module imports only the loop and the modules
below it (settings, errors, checkpoints), never an algorithm, a sampler or the launcher.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metarl.checkpoint import CheckpointError
from metarl.config import RunConfig, config_to_dict
from metarl.errors import NonFiniteError, check_finite, check_validation_seed
from metarl.registry import resolve_config
from metarl.training import run_meta_training

__all__ = ["MetaAlgorithm", "NonFiniteError", "check_finite", "check_validation_seed"]


class MetaAlgorithm(abc.ABC):
    """A meta-learner plugged into :func:`run_meta_training`."""

    #: short name used in logs and ``metatest.json`` (e.g. ``"maml-trpo"``)
    name: str = ""
    #: :meth:`config` keys that only affect :meth:`meta_test`: a resumed run may change them
    metatest_only_settings: tuple[str, ...] = ()
    #: the settings dataclass of the algorithm (a :class:`~metarl.config.RunConfig` subclass)
    config_class: type[RunConfig] = RunConfig
    #: the run's settings
    cfg: RunConfig

    def resolve_settings(self, config: RunConfig | None, settings: Mapping[str, Any]) -> Any:
        """The validated settings of a new instance: ``config`` as given, or ``settings`` by name on top of
        the algorithm's preset for the family or dataset (:func:`metarl.registry.resolve_config`)."""
        if config is not None:
            if settings:
                raise TypeError(f"{type(self).__name__}: pass either a config or settings by name, not both")
            if not isinstance(config, self.config_class):
                raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, "
                                f"got {type(config).__name__}")
            config.validate()
            return config
        return resolve_config(self.name, self.config_class, settings)

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

    def restore(self, state: dict[str, Any], where: str) -> None:
        """:meth:`load_state_dict` from a checkpoint read from ``where``, with a one-line error if it does not fit.

        Raises:
            CheckpointError: a missing key or a weight of another shape (a damaged or foreign checkpoint).
        """
        try:
            self.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {where} does not fit the {self.name} model built from its settings "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); it is damaged or from "
                                  "another version - start a new --logdir") from exc

    def config(self) -> dict[str, Any]:
        """The run's settings (JSON-serialisable) with the algorithm's name; stored in checkpoints,
        ``config.yaml`` and logged as text."""
        return {"algo": self.name, **config_to_dict(self.cfg)}

    def validation_scores(self, n_tasks: int, seed: int) -> dict[str, float]:
        """Scores of the current meta-parameters on ``n_tasks`` validation tasks drawn from ``seed``.

        Used by :func:`run_meta_training`'s ``eval_every`` to keep the best checkpoint. The key
        ``"score"`` is the one maximised; other keys are logged under ``eval/``. Must not draw from the
        training generator or torch's global RNG (the training curve stays the same with or without
        validation), and must refuse the meta-test's seed. Algorithms without it cannot use ``eval_every``.
        """
        raise NotImplementedError(f"{self.name or type(self).__name__} has no validation score")

    @property
    def supports_validation(self) -> bool:
        """Whether this algorithm implements :meth:`validation_scores` (needed by ``eval_every``)."""
        return type(self).validation_scores is not MetaAlgorithm.validation_scores

    def format_metatest(self, result: Mapping[str, Any]) -> str:
        """Human-readable meta-test table printed at the end of training."""
        return json.dumps(result, indent=2)

    def write_artifacts(self, logdir: Path, result: Mapping[str, Any]) -> list[Path]:
        """Write files that picture the meta-test (figures) into the run directory; returns their paths."""
        return []

    def learn(self, logdir: str | os.PathLike | None = None, *, callbacks: Sequence[Any] = (),
              progress: bool = False) -> "MetaAlgorithm":
        """Meta-train for the configured iterations, then meta-test (``self.metatest_result``), writing the run
        directory (``logdir``, default the settings' ``logdir``) as ``metarl train`` does; returns ``self``.

        ``callbacks``: :class:`~metarl.callbacks.BaseCallback` objects of the user's, called after the
        built-in ones (logging, validation) and before the checkpoint; one returning ``False`` from
        ``on_iteration_end`` stops the run there (checkpointed, then meta-tested)."""
        self.metatest_result = run_meta_training(self, logdir=logdir, progress=progress, callbacks=callbacks)
        return self

    def metatest_scalars(self, result: Mapping[str, Any]) -> dict[str, float]:
        """Scalars from the meta-test result to log under ``metatest/``."""
        return {}
