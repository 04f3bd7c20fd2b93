"""The interface every meta-learner implements (:class:`MetaAlgorithm`), and the checks they share.

An algorithm (MAML-TRPO, RL^2, a few-shot learner, ...) implements ``meta_train_step``, ``meta_test``,
``state_dict``/``load_state_dict`` and, for model selection, ``validation_scores``; the outer loop
(:func:`metarl.training.run_meta_training`) does everything around them.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.checkpoint import CheckpointError
from metarl.config import RunConfig, config_to_dict

__all__ = ["MetaAlgorithm", "NonFiniteError", "check_finite", "check_validation_seed", "resolve_device",
           "acting_copy"]


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` (refused with a one-line error where CUDA is unavailable) or ``"auto"`` (CUDA when
    available) as a ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch build sees no CUDA device (torch.cuda.is_available() is False); "
                         "use --device cpu, or --device auto to take CUDA only where there is one")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: choose cpu, cuda or auto")
    return torch.device(name)


def acting_copy(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The module that acts in the sampler: ``module`` itself on the CPU, else a CPU copy of it (its current
    weights). Sampling runs on the CPU whatever the training device, with the same noise."""
    if device.type == "cpu":
        return module
    import copy

    return copy.deepcopy(module).cpu()


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
        the algorithm's preset for the family or dataset (:func:`metarl.presets.resolve_config`)."""
        if config is not None:
            if settings:
                raise TypeError(f"{type(self).__name__}: pass either a config or settings by name, not both")
            if not isinstance(config, self.config_class):
                raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, "
                                f"got {type(config).__name__}")
            config.validate()
            return config
        from metarl.presets import resolve_config

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

    def format_metatest(self, result: Mapping[str, Any]) -> str:
        """Human-readable meta-test table printed at the end of training."""
        return json.dumps(result, indent=2)

    def write_artifacts(self, logdir: Path, result: Mapping[str, Any]) -> list[Path]:
        """Write files that picture the meta-test (figures) into the run directory; returns their paths."""
        return []

    @property
    def device(self) -> torch.device:
        """Where the networks, the adaptation and the outer updates run (``device`` setting; sampling, and the
        policy copy that acts in it, stay on the CPU)."""
        if not hasattr(self, "_device"):
            self._device = resolve_device(getattr(self.cfg, "device", "cpu"))
        return self._device

    def sampler_factory(self, config: Any) -> Callable[[], Any]:
        """What builds the run's local sampler (picklable: remote workers build theirs with it): an
        :class:`~metarl.sampler.EpisodeSampler` of ``config``'s family (``env``, ``env_kwargs``,
        ``max_episode_steps``); RL^2 overrides it with its trial sampler."""
        from metarl.sampler import EpisodeSampler

        return functools.partial(EpisodeSampler, config.env, config.env_kwargs,
                                 max_episode_steps=config.max_episode_steps)

    def make_sampler(self, config: Any) -> Any:
        """The run's sampler: the local one, or with ``sampler: ray`` a :class:`~metarl.ray_sampler.RaySampler`
        of ``num_workers`` workers that samples the same episodes."""
        factory = self.sampler_factory(config)
        if getattr(config, "sampler", "local") != "ray":
            return factory()
        from metarl.ray_sampler import RaySampler

        return RaySampler(factory, config.num_workers, address=config.ray_address, worker_cpus=config.worker_cpus,
                          worker_timeout=config.worker_timeout, worker_retries=config.worker_retries)

    def retarget(self, env: str, env_kwargs: Mapping[str, Any] | None = None, **settings: Any) -> None:
        """Sample another family from now on with the same networks (to meta-test a run on a family it was not
        trained on); ``settings``: meta-test settings to change too (``metatest_tasks=...``).

        Raises:
            ValueError: the family's observation or action space differs from the run's (kind or shape).
        """
        from metarl.policy import check_spaces

        changes: dict[str, Any] = {"env": env, "env_kwargs": dict(env_kwargs or {}), **settings}
        if env != getattr(self.cfg, "env", None) or changes["env_kwargs"] != dict(getattr(self.cfg, "env_kwargs", {})):
            changes.setdefault("max_episode_steps", None)  # the other family's own horizon
        config = dataclasses.replace(self.cfg, **changes)
        config.validate()
        sampler = self.make_sampler(config)
        old = self.sampler  # type: ignore[attr-defined]
        try:
            check_spaces(sampler.env, old.env.observation_space, old.env.action_space, f"this {self.name} run")
        except ValueError:
            sampler.close()
            raise
        self.cfg, self.sampler = config, sampler
        old.close()  # its envs (and, for a Ray sampler, its workers)

    def learn(self, logdir: str | os.PathLike | None = None, *, progress: bool = False) -> "MetaAlgorithm":
        """Meta-train for the configured iterations, then meta-test (``self.metatest_result``), writing the run
        directory (``logdir``, default the settings' ``logdir``) as ``metarl train`` does; returns ``self``."""
        from metarl.training import run_meta_training

        self.metatest_result = run_meta_training(self, logdir=logdir, progress=progress)
        return self

    def metatest_scalars(self, result: Mapping[str, Any]) -> dict[str, float]:
        """Scalars from the meta-test result to log under ``metatest/``."""
        return {}
