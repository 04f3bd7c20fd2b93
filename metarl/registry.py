"""One record per algorithm, and one loader for every run.

An :class:`AlgorithmRecord` says everything the package needs to know of an algorithm: its name, its
kind (meta-RL, few-shot or continual: which subcommand trains it), its settings class, its presets,
how to build it from settings and how to turn a trained run into the object a user holds (a
meta-policy, a few-shot or an online learner). The built-in algorithms are registered at the bottom of
this module with the same call a user makes::

    import metarl

    metarl.register_algorithm("fo-reinforce", kind="meta-rl", config_class=MyConfig, build=MyAlgorithm,
                              load=MAMLPolicy.from_run, presets={"metarl/Navigation2D-v0": {"inner_lr": 0.1}})

Entry points may be objects or ``"module:attribute"`` strings (imported on first use, so listing the
algorithms imports none of them). A user's module is named on the command line as for families:
``metarl train --algo my_algos:fo-reinforce`` imports ``my_algos`` (which registers) and the run
remembers the qualified name, so ``metarl evaluate DIR`` and :func:`load` import it again.

:func:`load` returns the object a user holds for any run directory; :func:`load_run` the trained
algorithm itself; :func:`make_algorithm` a new one with the settings the command line would use.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from metarl.checkpoint import BEST_CHECKPOINT_NAME, CheckpointError, load_checkpoint
from metarl.config import RunConfig, config_from_dict, preset_name
from metarl.imports import import_prefix
from metarl.presets import preset

__all__ = ["AlgorithmRecord", "SavedRun", "KINDS", "COMMANDS", "register_algorithm", "algorithm_record",
           "algorithm_names", "resolve_config", "make_algorithm", "read_run", "load_run", "load",
           "BEST_CHECKPOINT_NAME"]

#: the kinds of algorithm, and the subcommand that trains each
COMMANDS = {"meta-rl": "train", "few-shot": "fewshot", "continual": "continual"}
KINDS = tuple(COMMANDS)


def _resolve(entry: Any) -> Any:
    """An entry point: the object itself, or ``"module:attr.attr"`` imported."""
    if not isinstance(entry, str):
        return entry
    module, _, attrs = entry.partition(":")
    obj: Any = importlib.import_module(module)
    for attr in attrs.split("."):
        obj = getattr(obj, attr)
    return obj


@dataclass(frozen=True)
class SavedRun:
    """A run as read from its checkpoint: what a record's ``load`` turns into the object a user holds.

    Attributes:
        path: the run directory or checkpoint file given.
        algo: the algorithm's name as registered (qualified ``module:name`` for a user's module).
        config: the run's settings.
        state: the whole checkpoint (``state["algorithm"]`` is the algorithm's ``state_dict``).
    """

    path: Path
    algo: str
    config: RunConfig
    state: dict[str, Any]

    def algorithm(self, weights: bool = True) -> Any:
        """The trained algorithm, rebuilt from the settings with the checkpoint's weights (``weights=False``: freshly
        initialised), on the CPU and with the local sampler (a trained run is used here, on this machine, however
        it was trained)."""
        local = {k: v for k, v in (("device", "cpu"), ("sampler", "local")) if hasattr(self.config, k)}
        algorithm = make_algorithm(self.algo, dataclasses.replace(self.config, **local) if local else self.config)
        if weights:
            algorithm.restore(self.state["algorithm"], where=str(self.path))
        return algorithm


@dataclass(frozen=True)
class AlgorithmRecord:
    """Everything the package knows of one algorithm.

    Attributes:
        name: the ``--algo`` name.
        kind: ``"meta-rl"`` (``metarl train``), ``"few-shot"`` (``metarl fewshot``) or ``"continual"``
            (``metarl continual``).
        config_class: its settings dataclass (a :class:`~metarl.config.RunConfig` subclass), or
            ``"module:Class"``.
        build: settings -> a new :class:`~metarl.algorithm.MetaAlgorithm` (the class itself, or a function),
            called as ``build(config, **build_kwargs)``.
        load: :class:`SavedRun` (and the user's keyword arguments) -> the object a user holds; ``None``: the
            trained algorithm itself.
        presets: per family/dataset settings: a mapping ``{key: {setting: value}}``, the path of a YAML file
            of that shape, or ``None`` for the package's ``metarl/presets/<name>.yaml``.
        metatest_only: settings -> the settings only the meta-test reads (a resumed run may change them),
            called as ``metatest_only(config, **build_kwargs)``; ``None``: ``build.metatest_only_settings``.
        build_kwargs: extra keyword arguments of ``build`` and ``metatest_only``.
        summary: one line for ``--help`` and the docs.
    """

    name: str
    kind: str
    config_class: Any
    build: Any
    load: Any = None
    presets: Any = None
    metatest_only: Any = None
    build_kwargs: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""

    @property
    def command(self) -> str:
        """The subcommand that trains it."""
        return COMMANDS[self.kind]

    def settings_class(self) -> type[RunConfig]:
        """The settings dataclass (imported on first use)."""
        return _resolve(self.config_class)

    def make(self, config: RunConfig) -> Any:
        """A new algorithm of validated ``config``."""
        return _resolve(self.build)(config, **self.build_kwargs)

    def metatest_only_settings(self, config: RunConfig) -> tuple[str, ...]:
        """The settings a resumed run of ``config`` may change because only the meta-test reads them."""
        if self.metatest_only is not None:
            return tuple(_resolve(self.metatest_only)(config, **self.build_kwargs))
        return tuple(getattr(_resolve(self.build), "metatest_only_settings", ()))

    def preset(self, key: str | None, env_kwargs: Mapping[str, Any] | None = None,
               chosen: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The preset settings for family (or dataset) ``key``; ``{}`` if there is none. ``chosen``: the values of
        settings that select a preset's variant (:func:`metarl.presets.preset`)."""
        if key is None:
            return {}
        return preset(self.name if self.presets is None else self.presets, key, env_kwargs, chosen)

    def user_object(self, run: SavedRun, **kwargs: Any) -> Any:
        """What :func:`load` returns for ``run``."""
        if self.load is None:
            if kwargs:
                raise TypeError(f"loading a {self.name} run takes no options, got {sorted(kwargs)}")
            return run.algorithm()
        return _resolve(self.load)(run, **kwargs)


_REGISTRY: dict[str, AlgorithmRecord] = {}


def register_algorithm(name: str, *, kind: str, config_class: Any, build: Any, load: Any = None, presets: Any = None,
                       metatest_only: Any = None, build_kwargs: Mapping[str, Any] | None = None, summary: str = ""
                       ) -> AlgorithmRecord:
    """Make ``--algo name`` available to every entry point: its subcommand, ``--resume``, ``--seed 0 1``,
    ``metarl evaluate``/``plot``, :func:`make_algorithm`, :func:`metarl.train` and :func:`load`.

    The arguments are the fields of :class:`AlgorithmRecord`. Registering a name again replaces its record
    (re-importing a module is harmless).

    Raises:
        ValueError: an empty name, one with ``:`` in it, or an unknown kind.
    """
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise ValueError(f"algorithm name must be a non-empty string without ':' or spaces, got {name!r}")
    if kind not in COMMANDS:
        raise ValueError(f"kind of algorithm {name!r} must be one of {', '.join(KINDS)}, got {kind!r}")
    if isinstance(presets, (str, os.PathLike)) and not Path(presets).is_file() and str(presets) != name:
        raise ValueError(f"presets of algorithm {name!r}: no file {presets}")
    record = AlgorithmRecord(name, kind, config_class, build, load, presets, metatest_only,
                             dict(build_kwargs or {}), summary)
    _REGISTRY[name] = record
    return record


def algorithm_names(kind: str | None = None) -> list[str]:
    """The registered algorithms (of one kind), sorted."""
    return sorted(n for n, r in _REGISTRY.items() if kind is None or r.kind == kind)


def algorithm_record(algo: str) -> AlgorithmRecord:
    """The record of ``algo`` (``"module:name"`` imports ``module`` first, which registers it).

    Raises:
        ValueError: no such algorithm (the message lists them), or the module cannot be imported.
    """
    if not isinstance(algo, str) or not algo:
        raise ValueError(f"algorithm must be a non-empty string, got {algo!r}")
    name = import_prefix(algo, "algorithm")
    if name not in _REGISTRY:
        where = f" (module {algo.partition(':')[0]} was imported but registers no {name!r})" if ":" in algo else ""
        raise ValueError(f"unknown algorithm {name!r}{where}; choose from {', '.join(algorithm_names())}, or register "
                         "your own with metarl.register_algorithm and pass --algo your_module:name")
    return _REGISTRY[name]


def resolve_config(algo: str, config_class: type[RunConfig] | None = None,
                   settings: Mapping[str, Any] | None = None) -> Any:
    """The validated settings of an ``algo`` run: generic defaults, then its preset for the family (or dataset)
    named in ``settings`` (or the class default), then ``settings``.

    Raises:
        ValueError / TypeError: an unknown setting name or a value out of range, naming it.
    """
    record = algorithm_record(algo)
    cls = config_class or record.settings_class()
    settings = dict(settings or {})
    key_field = cls.preset_key
    fields = cls.__dataclass_fields__
    key = preset_name(settings.get(key_field, fields[key_field].default if key_field in fields else None))
    values = {**record.preset(key, settings.get("env_kwargs", {}), settings), **settings}
    config = config_from_dict(cls, values)
    config.validate()
    return config


def make_algorithm(algo: str, config: RunConfig | None = None, **settings: Any) -> Any:
    """A new algorithm, as ``metarl train`` / ``fewshot`` / ``continual`` builds it.

    Args:
        algo: the algorithm's name (``"maml-trpo"``, ``"rl2-ppo"``, ``"protonet"``, ``"my_algos:fo-reinforce"``).
        config: complete settings, used as given; or
        **settings: settings by name on top of the algorithm's preset for the family/dataset.

    The network initialisation is seeded with the run's ``seed``, as on the command line.
    """
    record = algorithm_record(algo)
    if config is None:
        config = resolve_config(algo, record.settings_class(), settings)
    elif settings:
        raise TypeError("pass either a config or settings by name, not both")
    if not isinstance(config, record.settings_class()):
        raise TypeError(f"{algo} takes a {record.settings_class().__name__}, got {type(config).__name__}")
    config.validate()
    torch.manual_seed(config.seed)  # network initialisation; everything else draws from the run's generator
    algorithm = record.make(config)
    if ":" in algo:  # the run remembers the module that registers it (evaluate and load import it again)
        algorithm.name = algo
    return algorithm


def read_run(run_dir: str | os.PathLike, best: bool = False) -> SavedRun:
    """A run directory (or checkpoint file) as read from its checkpoint, whatever its kind.

    Raises:
        CheckpointError: no readable checkpoint, or one naming an unknown algorithm or settings that do not fit.
    """
    path = Path(run_dir)
    if best:
        path = (path if path.is_dir() else path.parent) / BEST_CHECKPOINT_NAME
        if not path.is_file():
            raise CheckpointError(f"no {BEST_CHECKPOINT_NAME} in {run_dir}: only runs trained with --eval-every "
                                  "keep a best validation checkpoint")
    state = load_checkpoint(path)
    saved = dict(state["config"])
    algo = saved.pop("algo", None) or saved.pop("method", None) or "maml-trpo"  # few-shot runs of 0.1 named "method"
    try:
        record = algorithm_record(algo)
    except ValueError as exc:
        raise CheckpointError(f"{run_dir}: its checkpoint names algorithm {algo!r}: {exc}") from exc
    try:
        config = config_from_dict(record.settings_class(), saved, where=f"{run_dir}'s checkpoint", strict=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{run_dir}: its checkpoint's settings do not fit {algo} ({exc})") from exc
    return SavedRun(Path(run_dir), algo, config, state)


def load_run(run_dir: str | os.PathLike, weights: bool = True, best: bool = False) -> Any:
    """The algorithm of a run directory (any kind), rebuilt from its settings and checkpoint.

    With ``weights=False`` it is the run's freshly initialised algorithm (same settings and seed);
    with ``best=True`` it holds the best validation state (``best.pt`` of a run with ``--eval-every``).

    Raises:
        CheckpointError: no readable checkpoint, an unknown algorithm, or weights that do not fit the model.
    """
    return read_run(run_dir, best=best).algorithm(weights)


_LOADERS = {"meta-rl": "metarl.load_policy", "few-shot": "metarl.fewshot.load_learner",
            "continual": "metarl.continual.load_learner"}


def load(run_dir: str | os.PathLike, *, best: bool = False, kind: str | None = None, **kwargs: Any) -> Any:
    """The object a user holds for any run: a meta-policy (``.adapt(env).act(obs)``), a few-shot learner
    (``.adapt(x, y).predict(x)``), an online continual learner, or for algorithms that register no loader
    the trained algorithm itself.

    Args:
        run_dir: the run directory (its last state) or a checkpoint file.
        best: the best validation state (``best.pt`` of a run trained with ``--eval-every``).
        kind: refuse runs of another kind (``"meta-rl"``, ``"few-shot"``, ``"continual"``).
        **kwargs: the algorithm's loading options (continual: ``method``, ``lr``, ``memory_capacity``, ``seed``).

    Raises:
        CheckpointError: no readable checkpoint, an unknown algorithm, or weights that do not fit.
        ValueError: the run is not of ``kind``.
    """
    run = read_run(run_dir, best=best)
    record = algorithm_record(run.algo)
    if kind is not None and record.kind != kind:
        raise ValueError(f"{run_dir} is a {run.algo} run ({record.kind}), not a {kind} one: load it with metarl.load "
                         f"or {_LOADERS[record.kind]}")
    return record.user_object(run, **kwargs)


# ----------------------------------------------------------------------------------------------
# the built-in algorithms, registered as a user's would be

def _register_builtins() -> None:
    rl = [("maml-trpo", "maml_trpo:MAMLTRPO", "maml_config:MAMLConfig", "maml_policy:MAMLPolicy.from_run",
           "MAML with a TRPO outer step (Finn et al. 2017)"),
          ("maml-ppo", "maml_ppo:MAMLPPO", "maml_config:MAMLPPOConfig", "maml_policy:MAMLPolicy.from_run",
           "MAML with ProMP's clipped PPO outer step (Rothfuss et al. 2019)"),
          ("rl2-ppo", "rl2:RL2PPO", "rl2_config:RL2Config", "rl2:RL2Policy.from_run",
           "RL^2: a recurrent policy over whole trials, trained with PPO (Duan et al. 2016)"),
          ("rl2-transformer", "rl2:RL2Transformer", "rl2_config:RL2TransformerConfig", "rl2:RL2Policy.from_run",
           "RL^2 with a causal transformer memory over the trial (TrMRL, Melo 2022; AMAGO, Grigsby et al. 2024)"),
          ("pearl", "pearl:PEARL", "pearl_config:PEARLConfig", "pearl_policy:PEARLPolicy.from_run",
           "PEARL: posterior sampling of a task variable with SAC (Rakelly et al. 2019)")]
    for name, build, config, load, summary in rl:
        register_algorithm(name, kind="meta-rl", build=f"metarl.agents.{build}", config_class=f"metarl.agents.{config}",
                           load=f"metarl.agents.{load}", summary=summary)
    fewshot = {"maml": "MAML, second order (Finn et al. 2017)", "fomaml": "first-order MAML",
               "metasgd": "Meta-SGD: learned per-parameter step sizes (Li et al. 2017)",
               "protonet": "prototypical networks (Snell et al. 2017)",
               "mann": "memory-augmented network (Santoro et al. 2016)"}
    for name, summary in fewshot.items():
        register_algorithm(name, kind="few-shot", build="metarl.fewshot.build:build_algorithm",
                           config_class="metarl.fewshot.config:FewShotConfig",
                           load="metarl.fewshot.inference:learner_from_run",
                           metatest_only="metarl.fewshot.build:metatest_only_settings",
                           build_kwargs={"algo": name}, summary=summary)
    continual = {"oml": "OML: meta-learned representation, online head (Javed & White 2019)",
                 "oml-er": "OML's representation with experience replay online", "pretrain": "pretrained representation",
                 "finetune": "pretrained network, all of it learned online", "er": "experience replay",
                 "iid": "offline i.i.d. reference"}
    for name, summary in continual.items():
        register_algorithm(name, kind="continual", build="metarl.continual.algorithm:ContinualLearning",
                           config_class="metarl.continual.config:ContinualConfig",
                           load="metarl.continual.inference:learner_from_run", build_kwargs={"algo": name},
                           summary=summary)


_register_builtins()
