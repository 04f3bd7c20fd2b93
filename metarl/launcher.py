"""One launcher for every kind of run: settings, start, resume and several seeds, for ``metarl train``,
``metarl fewshot`` and ``metarl continual`` alike (and for what registers with
:func:`metarl.register_algorithm`).

A run's settings are layered: the algorithm's config class (generic defaults), its preset for the
family or dataset (:mod:`metarl.presets`, or the record's own), a ``--config FILE``, then the flags given.
``--help`` shows the values the run would use with the flags given so far (``metarl train --algo
maml-trpo --env metarl/Navigation2D-v0 --help``), the run prints them when it starts and writes them to
``DIR/config.yaml``. ``--resume DIR`` continues the run with the settings saved in its checkpoint; a flag
that would change what the run computes is refused, naming it (:func:`metarl.config.resume_conflicts`).
``--seed 0 1 2`` runs each seed into ``DIR/seed_<s>`` on the same parsed settings (:mod:`metarl.seeds`).

Each subcommand trains one kind of algorithm (``metarl train``: meta-RL; ``fewshot``; ``continual``) and
refuses another kind's in one line naming the right subcommand. No parser abbreviates a flag.

Python users get the same through :func:`train`, :func:`metarl.make_algorithm` and :func:`metarl.load`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
import textwrap
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from metarl.callbacks import BaseCallback, TrainingState
from metarl.checkpoint import CHECKPOINT_NAME
from metarl.config import (RENAMED_SETTINGS, CommandParser, add_config_arguments, config_from_dict, config_to_dict,
                           preset_name, resume_conflicts)
from metarl.errors import TrainingInterrupted
from metarl.registry import (COMMANDS, AlgorithmRecord, algorithm_names, algorithm_record, make_algorithm, read_run,
                             resolve_config)
from metarl.seeds import read_seed_list, seed_dir, write_seed_list, write_seed_summary
from metarl.system import keep_freed_memory
from metarl.training import run_meta_training

__all__ = ["launch", "resolve_run", "run_seeds", "parse_env_kwargs", "train", "check_command", "DEFAULT_ALGORITHM"]

#: the algorithm each subcommand runs when neither --algo nor a config file names one
DEFAULT_ALGORITHM = {"train": "maml-trpo", "fewshot": "maml", "continual": "oml"}
_KIND_OF = {command: kind for kind, command in COMMANDS.items()}
#: what each command meta-trains, for its --help
_WHAT = {"train": "meta-RL algorithm", "fewshot": "few-shot learner", "continual": "continual learner"}
#: a few-shot name typed where RL was meant, and back
_COUNTERPART = {"maml": "maml-trpo", "fomaml": "maml-trpo", "maml-trpo": "maml", "maml-ppo": "maml"}


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
    return {RENAMED_SETTINGS.get(k, k): v for k, v in data.items()}


def check_command(command: str, record: AlgorithmRecord, algo: str) -> None:
    """Refuse an algorithm of another kind than ``command`` trains, naming the right subcommand."""
    if record.command == command:
        return
    hint = ""
    other = _COUNTERPART.get(record.name)
    if other is not None and algorithm_record(other).command == command:
        hint = f"; for {_WHAT[command].split()[0]} use --algo {other}"
    raise ValueError(f"{algo} is a {_WHAT[record.command]}: metarl {record.command} --algo {algo}{hint} "
                     f"(metarl {command} runs {', '.join(algorithm_names(_KIND_OF[command]))})")


def _preparse(argv: Sequence[str]) -> argparse.Namespace:
    """The flags that choose the parser: algorithm, config file, resume directory, family or dataset."""
    pre = CommandParser(add_help=False)
    pre.add_argument("--algo", "--method", dest="algo", default=None)
    pre.add_argument("--config", type=Path, default=None)
    pre.add_argument("--resume", type=Path, default=None)
    pre.add_argument("--env", default=None)
    pre.add_argument("--dataset", nargs="+", default=None)
    pre.add_argument("--env-kwargs", nargs="*", default=None)
    known, _ = pre.parse_known_args(argv)
    return known


def _parser(command: str, algo: str, record: AlgorithmRecord, defaults: dict[str, Any], *, hide_unused: bool = True
            ) -> argparse.ArgumentParser:
    cls = record.settings_class()
    parser = CommandParser(
        prog=f"metarl {command}", description=f"meta-train a {_WHAT[command]}, then meta-test it",
        epilog="Defaults shown are the ones this run would use: the algorithm's preset for the family/dataset "
               "(metarl/presets/<algo>.yaml), then --config, then the flags. Settings are saved to DIR/config.yaml.")
    parser.add_argument("--algo", "--method", dest="algo", default=algo, metavar="ALGO",
                        help=f"the {_WHAT[command]}: {', '.join(algorithm_names(_KIND_OF[command]))}, or "
                             f"your_module:name (default: {algo}; --method is the same flag)")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="YAML file of settings (e.g. a run's config.yaml); flags override it")
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR",
                        help="continue the stopped run in DIR with its saved settings (--iterations may extend it); "
                             "a multi-seed DIR finishes every seed")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    if "env_kwargs" in cls.__dataclass_fields__:
        parser.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE",
                            help="family constructor kwargs, e.g. --env-kwargs k=10 n=100")
    hidden: set[str] = set()
    if hide_unused:  # the flags of settings this learner never reads are accepted but not listed
        try:
            hidden = config_from_dict(cls, defaults, where="the settings", strict=False).unused_settings(algo)
        except (TypeError, ValueError):
            pass  # a bad value is reported once the flags are parsed
    add_config_arguments(parser, cls, defaults, many={"seed": ""}, hidden=sorted(hidden))
    return parser


def _given(args: argparse.Namespace, record: AlgorithmRecord) -> dict[str, Any]:
    """The settings the flags gave (lists as tuples; ``seed`` is handled apart)."""
    fields = record.settings_class().__dataclass_fields__
    given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items()
             if k in fields and k not in ("env_kwargs", "seed")}
    if getattr(args, "env_kwargs", None) is not None:
        given["env_kwargs"] = parse_env_kwargs(args.env_kwargs)
    return given


def _seeds(args: argparse.Namespace, default: int) -> list[int]:
    return check_seeds(list(getattr(args, "seed", [default])))


def check_seeds(seeds: Sequence[Any]) -> list[int]:
    """The run's seeds as integers, refusing a repeated, negative, too large or non-integer one (before any
    seed trains)."""
    if not seeds:
        raise ValueError("seed: give at least one seed")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= 4294967295:
            raise ValueError(f"seed must be an integer in [0, 4294967295], got {seed!r}")
    if len(set(int(s) for s in seeds)) != len(seeds):
        raise ValueError(f"--seed lists a seed twice: {' '.join(map(str, seeds))}")
    return [int(s) for s in seeds]


def _resumed(record: AlgorithmRecord, saved: Any, given: dict[str, Any], run_dir: Path) -> Any:
    """``saved`` settings with the flags ``given`` on a resume, refusing any that would change what it computes."""
    if "logdir" in given and Path(given["logdir"]).resolve() != run_dir.resolve():
        raise ValueError(f"--logdir {given['logdir']} differs from --resume {run_dir}: a resumed run stays in "
                         "its directory (copy the directory first to branch a run)")
    before = config_to_dict(saved)
    config = config_from_dict(type(saved), {**before, **given, "logdir": str(run_dir)}, where="the settings")
    after = config_to_dict(config)
    changed = resume_conflicts(before, after, record.metatest_only_settings(saved))
    if changed:
        was = ", ".join(f"{k}={before[k]!r}" for k in changed)
        raise ValueError(f"cannot change {', '.join(changed)} when resuming {run_dir} (the run has {was}); "
                         "resume without them, or start a new run in a new --logdir")
    config.validate()
    return config


def launch(command: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` for ``metarl <command>``, build the run (or runs, one per seed), meta-train and meta-test.

    Returns:
        The meta-test result (also in ``DIR/metatest.json``), or the summary over seeds
        (``DIR/metatest_summary.json``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    known = _preparse(argv)
    asks_help = any(a in ("-h", "--help") for a in argv)
    if known.resume is not None and not asks_help:
        if known.config is not None:
            raise ValueError("--config starts a new run; --resume continues one with its own settings: give one")
        if _seed_list(known.resume) is not None:
            return _resume_seeds(command, known, argv)
        run = read_run(known.resume)
        if known.algo is not None and known.algo != run.algo:
            raise ValueError(f"{known.resume} is a {run.algo} run, not {known.algo}: leave --algo out when resuming")
        record = algorithm_record(run.algo)
        defaults = config_to_dict(run.config)
        defaults["iterations"] = int(run.state.get("target_iterations", run.state.get("iteration", 0)))
        args = _parser(command, run.algo, record, defaults).parse_args(argv)
        if getattr(args, "seed", [run.config.seed]) != [run.config.seed]:
            raise ValueError(f"cannot change seed when resuming {known.resume} (the run has seed={run.config.seed})")
        given = {"iterations": defaults["iterations"], **_given(args, record)}
        config = _resumed(record, run.config, given, known.resume)
        return _run(run.algo, config, resume=True, progress=not args.no_progress)[1]

    algo, config, seeds, progress = resolve_run(command, argv)
    if len(seeds) == 1:
        return _run(algo, config, resume=False, progress=progress)[1]
    return run_seeds(algo, config, seeds, progress=progress)


def resolve_run(command: str, argv: Sequence[str]) -> tuple[str, Any, list[int], bool]:
    """The settings of a new run of ``metarl <command> ARGV`` without running it: ``(algo, config, seeds,
    progress)``, the config validated and holding the first seed. What ``launch`` runs, and what ``--help``
    shows as defaults."""
    known = _preparse(argv)
    file_settings = _read_config_file(known.config) if known.config is not None else {}
    algo = known.algo or file_settings.pop("algo", None) or DEFAULT_ALGORITHM[command]
    file_settings.pop("algo", None)
    record = algorithm_record(algo)
    check_command(command, record, algo)
    cls = record.settings_class()
    key_field = cls.preset_key
    value = getattr(known, key_field, None) if key_field in ("env", "dataset") else None
    fields = cls.__dataclass_fields__
    value = value or file_settings.get(key_field) or (fields[key_field].default if key_field in fields else None)
    if isinstance(value, list) and typing.get_origin(typing.get_type_hints(cls)[key_field]) is not tuple:
        value = value[0] if len(value) == 1 else value  # a setting of one value given several: refused below
    env_kwargs = parse_env_kwargs(known.env_kwargs) if known.env_kwargs is not None \
        else dict(file_settings.get("env_kwargs") or {})
    generic = config_to_dict(cls())

    def defaults_for(chosen: dict[str, Any]) -> dict[str, Any]:
        out = {**generic, **record.preset(preset_name(value), env_kwargs, chosen), **file_settings}
        if key_field:
            out[key_field] = list(value) if isinstance(value, tuple) else value
        if "env_kwargs" in fields:
            out["env_kwargs"] = env_kwargs
        return out

    defaults = defaults_for({})
    args = _parser(command, algo, record, defaults).parse_args(argv)
    # a preset's variants by another setting (protonet's text presets by --encoder): chosen by the flags
    chosen = {**defaults, **_given(args, record)}
    if defaults_for(chosen) != defaults:
        defaults = defaults_for(chosen)
        args = _parser(command, algo, record, defaults).parse_args(argv)
    seeds = _seeds(args, int(defaults.get("seed", 0)))
    config = config_from_dict(cls, {**defaults, **_given(args, record), "seed": seeds[0]}, where="the settings")
    config.validate()
    return algo, config, seeds, not args.no_progress


def _seed_list(parent: Path) -> dict[str, Any] | None:
    """The seeds of a multi-seed run directory (its ``seeds.yaml``; for runs of earlier versions, which have
    none, the ``seed_<s>`` directories holding a checkpoint), or ``None``."""
    listed = read_seed_list(parent)
    if listed is not None or (parent / CHECKPOINT_NAME).is_file():
        return listed
    dirs = sorted((p for p in parent.glob("seed_*") if p.name[5:].isdigit() and (p / CHECKPOINT_NAME).is_file()),
                  key=lambda p: int(p.name[5:]))
    if not dirs:
        return None
    first = read_run(dirs[0])
    return {"algo": first.algo, "seeds": [int(p.name[5:]) for p in dirs], "settings": config_to_dict(first.config)}


def _resume_seeds(command: str, known: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """``--resume PARENT`` of a multi-seed run: resume the seeds that started, start those that had not."""
    parent = Path(known.resume)
    listed = _seed_list(parent)
    assert listed is not None
    algo = listed["algo"]
    if known.algo is not None and known.algo != algo:
        raise ValueError(f"{parent} is a {algo} run, not {known.algo}: leave --algo out when resuming")
    record = algorithm_record(algo)
    cls = record.settings_class()
    shared = config_from_dict(cls, {**listed["settings"], "logdir": str(parent)}, where=f"{parent}'s seeds.yaml",
                              strict=False)
    args = _parser(command, algo, record, config_to_dict(shared)).parse_args(argv)
    if getattr(args, "seed", listed["seeds"]) != listed["seeds"]:
        raise ValueError(f"cannot change the seeds when resuming {parent} (the run has seeds "
                         f"{' '.join(map(str, listed['seeds']))})")
    given = _given(args, record)
    configs, resumes = [], []
    for seed in listed["seeds"]:
        directory = seed_dir(parent, seed)
        if (directory / CHECKPOINT_NAME).is_file():
            run = read_run(directory)
            iterations = {"iterations": int(run.state.get("target_iterations", run.config.iterations))}
            configs.append(_resumed(record, run.config, {**iterations, **given}, directory))
        else:
            fresh = dataclasses.replace(shared, seed=seed, logdir=str(directory))
            configs.append(_resumed(record, fresh, given, directory))
        resumes.append((directory / CHECKPOINT_NAME).is_file())
    return _run_seed_configs(algo, parent, listed["seeds"], configs, resumes, progress=not args.no_progress)


def run_seeds(algo: str, config: Any, seeds: Sequence[int], *, progress: bool,
              callbacks: Sequence[BaseCallback] = ()) -> dict[str, Any]:
    """Run ``config`` once per seed into ``DIR/seed_<s>`` (``DIR``: its logdir, or the default with every seed in
    its name), recorded first in ``DIR/seeds.yaml``; then ``DIR/metatest_summary.json``."""
    parent = Path(config.logdir) if config.logdir is not None else _default_logdir(algo, config, seeds)
    shared = config_to_dict(dataclasses.replace(config, seed=int(seeds[0]), logdir=None))
    if (parent / CHECKPOINT_NAME).is_file() or read_seed_list(parent) is not None:
        raise ValueError(f"{parent} already holds a run; pass --resume {parent} to continue it or choose a new --logdir")
    configs = [dataclasses.replace(config, seed=int(s), logdir=str(seed_dir(parent, s))) for s in seeds]
    for seed_config in configs:  # every seed is checked before the first one trains
        seed_config.validate()
    write_seed_list(parent, algo, seeds, shared)
    return _run_seed_configs(algo, parent, list(seeds), configs, [False] * len(seeds), progress=progress,
                             callbacks=callbacks)


def _run_seed_configs(algo: str, parent: Path, seeds: list[int], configs: list[Any], resumes: list[bool], *,
                      progress: bool, callbacks: Sequence[BaseCallback] = ()) -> dict[str, Any]:
    results = []
    for config, resume in zip(configs, resumes):
        try:
            results.append(_run(algo, config, resume=resume, progress=progress, callbacks=callbacks)[1])
        except TrainingInterrupted as exc:  # the parent resumes every seed, also those not started
            raise TrainingInterrupted(parent, exc.iteration) from None
    return write_seed_summary(parent, seeds, [c.logdir for c in configs], results)


def _describe(config: Any, algo: str) -> str:
    """The run's settings (those its learner reads) as wrapped `key=value` lines for its first printed lines."""
    unused = config.unused_settings(algo.split(":")[-1])
    values = {k: v for k, v in config_to_dict(config).items() if k not in unused}
    lines = textwrap.wrap(", ".join(f"{k}={v}" for k, v in values.items()), width=110,
                          initial_indent="  settings: ", subsequent_indent="            ")
    return "\n".join(lines)


def _default_logdir(algo: str, config: Any, seeds: Sequence[int] | None = None) -> Path:
    key = config.preset_name() or "run"
    seeds = [config.seed] if seeds is None else seeds
    name = f"{algo.split(':')[-1]}-{str(key).split(':')[-1].replace('/', '-')}-s{'-'.join(map(str, seeds))}"
    return Path("runs") / name


class _Banner(BaseCallback):
    """Prints what the run is, once its directory is locked and its settings accepted (a refusal prints only
    its one line)."""

    def __init__(self, text: str):
        self.text = text

    def on_training_start(self, state: TrainingState) -> None:
        print(self.text, file=sys.stderr)


def _run(algo: str, config: Any, *, resume: bool, progress: bool, callbacks: Sequence[BaseCallback] = ()
         ) -> tuple[Any, dict[str, Any]]:
    """Build the algorithm of a validated ``config``, meta-train and meta-test it (the run's last steps)."""
    if config.logdir is None:
        config = dataclasses.replace(config, logdir=str(_default_logdir(algo, config)))
    torch.set_num_threads(config.threads)
    algorithm = make_algorithm(algo, config)
    state = "resuming" if resume else "starting"
    banner = _Banner(f"metarl: {state} {algo} on {config.preset_name() or ''}, seed {config.seed}, "
                     f"{config.iterations} meta-iterations, logdir {config.logdir}\n{_describe(config, algo)}")
    keep_freed_memory()  # no page-fault churn from per-iteration arrays (metarl/system.py)
    result = run_meta_training(algorithm, logdir=config.logdir, resume=resume, progress=progress,
                               callbacks=[banner, *callbacks])
    algorithm.metatest_result = result
    return algorithm, result


def train(algo: str, env: str | None = None, *, seed: int | Sequence[int] = 0, logdir: str | os.PathLike | None = None,
          progress: bool = False, callbacks: Sequence[BaseCallback] = (), **settings: Any) -> Path:
    """Meta-train as ``metarl train`` / ``metarl fewshot`` / ``metarl continual`` do, from Python.

    Args:
        algo: the algorithm (``"maml-trpo"``, ``"rl2-ppo"``, ``"pearl"``, ``"protonet"``, ``"oml"``,
            ``"my_module:name"``, ...).
        env: the family (RL) or dataset (few-shot, continual); default the algorithm's.
        seed: one seed, or several: each runs into ``logdir/seed_<s>`` and ``logdir/metatest_summary.json``
            gets the mean and 95% interval over seeds.
        logdir: the run directory (default ``runs/<algo>-<env>-s<seed>``).
        progress: show the progress bar.
        callbacks: :class:`~metarl.callbacks.BaseCallback` objects of your own (one returning ``False`` from
            ``on_iteration_end`` stops the run, checkpointed and meta-tested).
        **settings: any setting by name, on top of the algorithm's preset for ``env`` (as the flags).

    Returns:
        The run directory (``metatest.json``, checkpoints, TensorBoard events; :func:`metarl.load`).

    Raises:
        ValueError / TypeError: an unknown algorithm or setting, or a value out of range (naming it).
    """
    record = algorithm_record(algo)
    if env is not None:
        settings[record.settings_class().preset_key] = env
    seeds = check_seeds([seed] if isinstance(seed, (int, np.integer)) or not hasattr(seed, "__iter__") else list(seed))
    config = resolve_config(algo, record.settings_class(), {**settings, "seed": int(seeds[0])})
    directory = Path(logdir) if logdir is not None else Path(config.logdir or _default_logdir(algo, config, seeds))
    config = dataclasses.replace(config, logdir=str(directory))
    if len(seeds) == 1:
        _run(algo, config, resume=False, progress=progress, callbacks=callbacks)
    else:
        run_seeds(algo, config, seeds, progress=progress, callbacks=callbacks)
    return directory
