"""One launcher for every kind of run: settings, start, resume and loading, for ``metarl train`` and
``metarl fewshot`` alike (and for what registers with :func:`register_algorithm`).

A run's settings are layered: the algorithm's config class (generic defaults), its preset for the
family or dataset (:mod:`metarl.presets`), a ``--config FILE``, then the flags given. ``--help`` shows
the values the run would use with the flags given so far (``metarl train --algo maml-trpo --env
metarl/Navigation2D-v0 --help``), the run prints them when it starts and writes them to
``DIR/config.yaml``. ``--resume DIR`` continues the run with the settings saved in its checkpoint;
a flag that would change what the run computes is refused, naming it (only the length, the checkpoint
cadence, threads, validation cadence and the meta-test-only settings may change).

Python users get the same settings through :func:`make_algorithm` (or an algorithm class called with
settings by name) and the trained learner through :func:`load_run`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from metarl.checkpoint import CheckpointError, load_checkpoint
from metarl.config import RENAMED_SETTINGS, RUNTIME_SETTINGS, RunConfig, add_config_arguments, config_from_dict, \
    config_to_dict
from metarl.presets import preset
from metarl.system import keep_freed_memory
from metarl.training import BEST_CHECKPOINT_NAME, MetaAlgorithm, run_meta_training

__all__ = ["AlgorithmSpec", "ALGORITHMS", "register_algorithm", "algorithm_spec", "make_algorithm", "load_run",
           "run_config", "launch", "parse_env_kwargs", "train"]


@dataclass(frozen=True)
class AlgorithmSpec:
    """How the launcher builds an algorithm.

    Attributes:
        name: the ``--algo`` name, also the algorithm's ``name`` and its presets file's.
        command: the subcommand that lists it (``"train"`` for RL, ``"fewshot"``).
        config_class: its settings dataclass (a :class:`~metarl.config.RunConfig` subclass).
        make: resolved config -> algorithm.
        metatest_only: config -> the settings a resumed run may change because only the meta-test reads them.
    """

    name: str
    command: str
    config_class: type[RunConfig]
    make: Callable[[Any], MetaAlgorithm]
    metatest_only: Callable[[Any], tuple[str, ...]] = lambda config: ()


def _rl(name: str, module: str, cls: str, config_cls: str) -> Callable[[], AlgorithmSpec]:
    def factory() -> AlgorithmSpec:
        mod = __import__(module, fromlist=[cls, config_cls])
        algorithm = getattr(mod, cls)
        return AlgorithmSpec(name, "train", getattr(mod, config_cls), algorithm,
                             lambda config: algorithm.metatest_only_settings)

    return factory


def _fewshot(name: str) -> Callable[[], AlgorithmSpec]:
    def factory() -> AlgorithmSpec:
        from metarl.fewshot.build import build_algorithm
        from metarl.fewshot.config import FewShotConfig
        from metarl.fewshot.algorithms import FewShotClassification, MANNMetaLearning, SinusoidMetaLearning

        def metatest_only(config: Any) -> tuple[str, ...]:
            if config.dataset == "sinusoid":
                return SinusoidMetaLearning.metatest_only_settings
            return (MANNMetaLearning if name == "mann" else FewShotClassification).metatest_only_settings

        return AlgorithmSpec(name, "fewshot", FewShotConfig, lambda config: build_algorithm(config, name),
                             metatest_only)

    return factory


def _continual(name: str) -> Callable[[], AlgorithmSpec]:
    def factory() -> AlgorithmSpec:
        from metarl.continual.algorithm import ContinualLearning
        from metarl.continual.config import ContinualConfig

        return AlgorithmSpec(name, "continual", ContinualConfig, lambda config: ContinualLearning(config, name),
                             lambda config: ContinualLearning.metatest_only_settings)

    return factory


#: algorithm name -> lazy spec factory (lazy so ``metarl envs`` imports no agent)
ALGORITHMS: dict[str, Callable[[], AlgorithmSpec]] = {
    "maml-trpo": _rl("maml-trpo", "metarl.agents.maml", "MAMLTRPO", "MAMLConfig"),
    "maml-ppo": _rl("maml-ppo", "metarl.agents.maml", "MAMLPPO", "MAMLPPOConfig"),
    "rl2-ppo": _rl("rl2-ppo", "metarl.agents.rl2", "RL2PPO", "RL2Config"),
    "pearl": _rl("pearl", "metarl.agents.pearl", "PEARL", "PEARLConfig"),
    **{name: _fewshot(name) for name in ("maml", "fomaml", "metasgd", "protonet", "mann")},
    **{name: _continual(name) for name in ("oml", "oml-er", "pretrain", "finetune", "er", "iid")},
}

#: the algorithm each command runs when neither --algo nor a config file names one
DEFAULT_ALGO = {"train": "maml-trpo", "fewshot": "maml", "continual": "oml"}
#: what each command meta-trains, for its --help
_KINDS = {"train": "RL meta-learner", "fewshot": "few-shot learner", "continual": "continual learner"}


def register_algorithm(name: str, spec_factory: Callable[[], AlgorithmSpec]) -> None:
    """Make ``--algo name`` available to the launcher (and :func:`make_algorithm` / :func:`load_run`)."""
    ALGORITHMS[name] = spec_factory


def algorithm_spec(name: str) -> AlgorithmSpec:
    """The spec of algorithm ``name``.

    Raises:
        ValueError: no such algorithm (the message lists them).
    """
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose from {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]()


def make_algorithm(algo: str, config: RunConfig | None = None, **settings: Any) -> MetaAlgorithm:
    """A new algorithm, as ``metarl train``/``metarl fewshot`` builds it.

    Args:
        algo: the algorithm's name (``"maml-trpo"``, ``"rl2-ppo"``, ``"protonet"``, ...).
        config: complete settings, used as given; or
        **settings: settings by name on top of the algorithm's preset for the family/dataset.

    The network initialisation is seeded with the run's ``seed``, as on the command line.
    """
    spec = algorithm_spec(algo)
    if config is None:
        from metarl.presets import resolve_config

        config = resolve_config(algo, spec.config_class, settings)
    elif settings:
        raise TypeError("pass either a config or settings by name, not both")
    config.validate()
    torch.manual_seed(config.seed)  # network initialisation; everything else draws from the run's generator
    return spec.make(config)


def run_config(run_dir: str | os.PathLike, best: bool = False) -> tuple[str, Any, dict[str, Any]]:
    """``(algo, config, checkpoint)`` of a run directory (or checkpoint file), whatever its kind.

    Raises:
        CheckpointError: no readable checkpoint, or one naming an unknown algorithm.
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
    if algo not in ALGORITHMS:
        raise CheckpointError(f"{run_dir}: its checkpoint names algorithm {algo!r}, which is not registered; "
                              f"known: {sorted(ALGORITHMS)}")
    spec = algorithm_spec(algo)
    try:
        config = config_from_dict(spec.config_class, saved, where=f"{run_dir}'s checkpoint", strict=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{run_dir}: its checkpoint's settings do not fit {algo} ({exc})") from exc
    return algo, config, state


def load_run(run_dir: str | os.PathLike, weights: bool = True, best: bool = False) -> MetaAlgorithm:
    """The algorithm of a run directory (any kind: MAML, RL^2, few-shot), rebuilt from its settings and checkpoint.

    With ``weights=False`` it is the run's freshly initialised algorithm (same settings and seed);
    with ``best=True`` it holds the best validation state (``best.pt`` of a run with ``--eval-every``).

    Raises:
        CheckpointError: no readable checkpoint, an unknown algorithm, or weights that do not fit the model.
    """
    algo, config, state = run_config(run_dir, best=best)
    # a trained run is used here, on this machine: on the CPU and with the local sampler, however it was trained
    local = {k: v for k, v in (("device", "cpu"), ("sampler", "local")) if hasattr(config, k)}
    algorithm = make_algorithm(algo, dataclasses.replace(config, **local) if local else config)
    if weights:
        algorithm.restore(state["algorithm"], where=str(run_dir))
    return algorithm


# ----------------------------------------------------------------------------------------------
# command line


def parse_env_kwargs(items: Sequence[str] | None) -> dict[str, Any]:
    """``["k=10", "n=100", "name=foo"]`` -> ``{"k": 10, "n": 100, "name": "foo"}`` (Python literals)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--env-kwargs expects key=value pairs, got {item!r}")
        if value.strip().lower() in ("nan", "inf", "-inf", "+inf"):
            out[key] = float(value)
            continue
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read --config {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"--config {path} is not valid YAML ({str(exc).splitlines()[0]})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path} must be a mapping of setting: value, got {type(data).__name__}")
    return data


def _base_parser(command: str, algo: str, spec: AlgorithmSpec | None) -> argparse.ArgumentParser:
    kind = _KINDS[command]
    parser = argparse.ArgumentParser(
        prog=f"metarl {command}", description=f"meta-train a {kind}, then meta-test it",
        epilog="Defaults shown are the ones this run would use: the algorithm's preset for the family/dataset "
               "(metarl/presets/<algo>.yaml), then --config, then the flags. Settings are saved to DIR/config.yaml.")
    parser.add_argument("--algo", "--method", dest="algo", default=algo, choices=sorted(ALGORITHMS),
                        help=f"meta-learning algorithm or continual method (default: {algo})")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="YAML file of settings (e.g. a run's config.yaml); flags override it")
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR",
                        help="continue the stopped run in DIR with its saved settings (--iterations may extend it)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    if spec is not None and "env_kwargs" in {f.name for f in dataclasses.fields(spec.config_class)}:
        parser.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE",
                            help="family constructor kwargs, e.g. --env-kwargs k=10 n=100")
    return parser


def _describe(config: Any) -> str:
    """The run's settings as wrapped `key=value` lines for its first printed lines."""
    values = config_to_dict(config)
    lines = textwrap.wrap(", ".join(f"{k}={v}" for k, v in values.items()), width=110,
                          initial_indent="  settings: ", subsequent_indent="            ")
    return "\n".join(lines)


def _default_logdir(algo: str, config: Any) -> Path:
    key = getattr(config, type(config).preset_key, None) or "run"
    return Path("runs") / f"{algo}-{str(key).split(':')[-1].replace('/', '-')}-s{config.seed}"


def _import_from_cwd(config: Any) -> None:
    """Let ``--env my_module:Family-v0`` import ``my_module.py`` from the current directory, as ``python -m`` would."""
    env = getattr(config, "env", "")
    if ":" in env and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def launch(command: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` for ``metarl <command>``, build the run, meta-train and meta-test it.

    Returns:
        The meta-test result (also in ``DIR/metatest.json``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    from metarl.seeds import multi_seed

    multi = multi_seed(command, argv)
    if multi is not None:
        return multi
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--algo", "--method", dest="algo", default=None)
    pre.add_argument("--config", type=Path, default=None)
    pre.add_argument("--resume", type=Path, default=None)
    pre.add_argument("--env", default=None)
    pre.add_argument("--dataset", default=None)
    pre.add_argument("--env-kwargs", nargs="*", default=None)
    known, _ = pre.parse_known_args(argv)
    asks_help = any(a in ("-h", "--help") for a in argv)

    resume_state: dict[str, Any] | None = None
    file_settings: dict[str, Any] = {}
    if known.resume is not None and not asks_help:
        if known.config is not None:
            raise ValueError("--config starts a new run; --resume continues one with its own settings: give one")
        algo, saved_config, resume_state = run_config(known.resume)
        if known.algo is not None and known.algo != algo:
            raise ValueError(f"{known.resume} is a {algo} run, not {known.algo}: leave --algo out when resuming")
        spec = algorithm_spec(algo)
        defaults = config_to_dict(saved_config)
        defaults["iterations"] = int(resume_state.get("target_iterations", resume_state["iteration"]))
        defaults["logdir"] = str(known.resume)
    else:
        if known.config is not None:
            file_settings = {RENAMED_SETTINGS.get(k, k): v for k, v in _read_config_file(known.config).items()}
        algo = known.algo or file_settings.pop("algo", None) or DEFAULT_ALGO[command]
        file_settings.pop("algo", None)
        spec = algorithm_spec(algo)
        key_field = spec.config_class.preset_key
        fields = spec.config_class.__dataclass_fields__
        key = getattr(known, key_field, None) if key_field in ("env", "dataset") else None
        key = key or file_settings.get(key_field) or (fields[key_field].default if key_field in fields else None)
        env_kwargs = parse_env_kwargs(known.env_kwargs) if known.env_kwargs is not None \
            else dict(file_settings.get("env_kwargs") or {})
        base = config_to_dict(spec.config_class())
        defaults = {**base, **(preset(algo, key, env_kwargs) if key else {}), **file_settings}
        if key_field:
            defaults[key_field] = key
        if "env_kwargs" in fields:
            defaults["env_kwargs"] = env_kwargs

    parser = _base_parser(command, algo, spec)
    add_config_arguments(parser, spec.config_class, defaults)
    args = parser.parse_args(argv)
    given = {name: value for name, value in vars(args).items()
             if name in spec.config_class.__dataclass_fields__ and name != "env_kwargs"}
    given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in given.items()}
    if resume_state is not None:
        if getattr(args, "env_kwargs", None) is not None:
            given["env_kwargs"] = parse_env_kwargs(args.env_kwargs)
        if "logdir" in given and Path(given["logdir"]).resolve() != Path(known.resume).resolve():
            raise ValueError(f"--logdir {given['logdir']} differs from --resume {known.resume}: a resumed run stays in "
                             "its directory (copy the directory first to branch a run)")
        allowed = {*RUNTIME_SETTINGS, "eval_every", "eval_tasks", "eval_seed", *spec.metatest_only(saved_config)}
        saved_values = config_to_dict(saved_config)
        changed = sorted(k for k, v in given.items() if k not in allowed
                         and config_to_dict(dataclasses.replace(saved_config, **{k: v}))[k] != saved_values[k])
        if changed:
            was = ", ".join(f"{k}={saved_values[k]!r}" for k in changed)
            raise ValueError(f"cannot change {', '.join(changed)} when resuming {known.resume} (the run has {was}); "
                             "resume without them, or start a new run in a new --logdir")
    config = config_from_dict(spec.config_class, {**defaults, **given}, where="the settings")
    config.validate()
    return _run(algo, config, resume=resume_state is not None, progress=not args.no_progress)[1]


def _run(algo: str, config: Any, *, resume: bool, progress: bool) -> tuple[MetaAlgorithm, dict[str, Any]]:
    """Build the algorithm of a validated ``config``, meta-train and meta-test it (the run's last steps)."""
    if config.logdir is None:
        config = dataclasses.replace(config, logdir=str(_default_logdir(algo, config)))
    _import_from_cwd(config)
    torch.set_num_threads(config.threads)
    algorithm = make_algorithm(algo, config)
    state = "resuming" if resume else "starting"
    print(f"metarl: {state} {algo} on {getattr(config, type(config).preset_key, '')}, seed {config.seed}, "
          f"{config.iterations} meta-iterations, logdir {config.logdir}\n{_describe(config)}", file=sys.stderr)
    keep_freed_memory()  # no page-fault churn from per-iteration arrays (metarl/system.py)
    result = run_meta_training(algorithm, logdir=config.logdir, resume=resume, progress=progress)
    algorithm.metatest_result = result
    return algorithm, result


def train(algo: str, env: str | None = None, *, seed: int | Sequence[int] = 0, logdir: str | os.PathLike | None = None,
          progress: bool = False, **settings: Any) -> Path:
    """Meta-train as ``metarl train`` / ``metarl fewshot`` / ``metarl continual`` do, from Python.

    Args:
        algo: the algorithm (``"maml-trpo"``, ``"rl2-ppo"``, ``"pearl"``, ``"protonet"``, ``"oml"``, ...).
        env: the family (RL) or dataset (few-shot, continual); default the algorithm's.
        seed: one seed, or several: each runs into ``logdir/seed_<s>`` and ``logdir/metatest_summary.json``
            gets the mean and 95% interval over seeds.
        logdir: the run directory (default ``runs/<algo>-<env>-s<seed>``).
        progress: show the progress bar.
        **settings: any setting by name, on top of the algorithm's preset for ``env`` (as the flags).

    Returns:
        The run directory (``metatest.json``, checkpoints, TensorBoard events; :func:`metarl.load_policy`).

    Raises:
        ValueError / TypeError: an unknown algorithm or setting, or a value out of range (naming it).
    """
    from metarl.presets import resolve_config
    from metarl.seeds import write_seed_summary

    spec = algorithm_spec(algo)
    key_field = spec.config_class.preset_key
    if env is not None:
        settings[key_field] = env
    seeds = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
    if not seeds:
        raise ValueError("seed: give at least one seed")
    configs = [resolve_config(algo, spec.config_class, {**settings, "seed": int(s)}) for s in seeds]
    if len(seeds) == 1:
        config = configs[0] if logdir is None else dataclasses.replace(configs[0], logdir=str(logdir))
        config = config if config.logdir is not None else dataclasses.replace(config, logdir=str(_default_logdir(algo, config)))
        _run(algo, config, resume=False, progress=progress)
        return Path(config.logdir)
    default = _default_logdir(algo, configs[0])
    parent = Path(logdir) if logdir is not None else default.with_name(
        default.name.rsplit("-s", 1)[0] + "-s" + "-".join(map(str, seeds)))
    dirs = [parent / f"seed_{int(s)}" for s in seeds]
    results = [_run(algo, dataclasses.replace(c, logdir=str(d)), resume=False, progress=progress)[1]
               for c, d in zip(configs, dirs)]
    write_seed_summary(parent, [int(s) for s in seeds], dirs, results)
    return parent
