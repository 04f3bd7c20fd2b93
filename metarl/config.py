"""Run configuration: one dataclass of settings per learner, all extending :class:`RunConfig`.

Each field carries its help text and, where it has one, its allowed range (``bounds``); one
function, :func:`check_config`, checks every field of any config against its type and range, so
a wrong value is rejected before training with a message naming the setting. Each field of a
config becomes a ``--field-name`` flag (CleanRL's one-dataclass-of-arguments pattern); booleans
become ``--flag/--no-flag`` switches.

The layering of a run's settings is: the config class's generic defaults, then the algorithm's
preset for the task family or dataset (:mod:`metarl.presets`), then a ``--config FILE``, then the
flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from metarl.errors import check_validation_seed

__all__ = [
    "RunConfig",
    "EnvRunConfig",
    "field",
    "check_config",
    "config_to_dict",
    "config_from_dict",
    "add_config_arguments",
    "RENAMED_SETTINGS",
    "RUNTIME_SETTINGS",
    "VALIDATION_SETTINGS",
    "resume_conflicts",
    "CommandParser",
    "in_bounds",
    "preset_name",
]

C = TypeVar("C")

#: settings renamed since earlier versions: old checkpoints and config files still load
RENAMED_SETTINGS = {
    "num_inner_steps": "inner_steps",
    "test_inner_steps": "metatest_steps",
    "clip_eps": "clip_range",
    "lr": "outer_lr",
    "test_seed": "metatest_seed",
    "test_episodes": "metatest_tasks",
    "test_queries": "metatest_queries",
    "test_chunk": "metatest_chunk",
    "validate_every": "eval_every",
}

#: settings that change how a run is executed but not what it computes: a resumed run may change them
RUNTIME_SETTINGS = ("iterations", "logdir", "checkpoint_every", "threads", "device", "sampler", "num_workers", "ray_address",
                    "worker_cpus", "worker_timeout", "worker_retries")
#: the validation cadence may change when resuming (a best checkpoint's own validation settings are checked apart)
VALIDATION_SETTINGS = ("eval_every", "eval_tasks", "eval_seed")


def resume_conflicts(saved: Mapping[str, Any], current: Mapping[str, Any], metatest_only: Sequence[str] = ()
                     ) -> list[str]:
    """The settings a resumed run would change but may not: the one rule of ``--resume``.

    Runtime settings (:data:`RUNTIME_SETTINGS`), the validation cadence and the algorithm's meta-test-only
    settings may change. A setting absent from ``saved`` was added to the library after the checkpoint was
    written; new settings default to the earlier behaviour, so it is no conflict.
    """
    allowed = {*RUNTIME_SETTINGS, *VALIDATION_SETTINGS, *metatest_only}
    return sorted(k for k in set(saved) - allowed if saved.get(k) != current.get(k))


def preset_name(value: Any) -> str | None:
    """A family or dataset setting as a presets key: several datasets (a list or tuple) joined by ``+``."""
    if isinstance(value, (list, tuple)):
        return "+".join(map(str, value))
    return value


def field(default: Any, help: str, *, bounds: str | None = None, flag: bool = True) -> Any:
    """A dataclass field with a help string and, optionally, an allowed range.

    Args:
        default: the generic default (a preset may replace it for a family or dataset).
        help: one line for ``--help`` and the docs.
        bounds: interval notation, e.g. ``"[0, 1]"``, ``"(0, inf)"``; numbers (and each element of a
            tuple of numbers) must lie inside. Float settings must be finite unless a bound is ``inf``
            and closed.
        flag: ``False`` keeps the field off the command line (e.g. ``env_kwargs``, given as KEY=VALUE pairs).
    """
    metadata = {"help": help, "bounds": bounds, "flag": flag}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class RunConfig:
    """What every meta-training run has, whatever the learner: seed, length, files, cadence, threads."""

    seed: int = field(0, "seed of the tasks, episodes and network initialisation (several, --seed 0 1 2: each runs "
                                "into DIR/seed_<s> and DIR/metatest_summary.json has the mean over seeds)",
                     bounds="[0, 4294967295]")
    iterations: int = field(300, "meta-iterations (a resumed run may extend them)", bounds="[0, inf)")
    logdir: str | None = field(None, "TensorBoard events, checkpoints, config.yaml and metatest.json "
                                     "(default runs/<algo>-<env or dataset>-s<seed>)")
    checkpoint_every: int = field(10, "meta-iterations between checkpoints (one is always written at the end)",
                                  bounds="[1, inf)")
    eval_every: int = field(0, "score the meta-parameters on validation tasks every N meta-iterations, keep the best "
                               "in best.pt and meta-test it into metatest_best.json (0: off)", bounds="[0, inf)")
    eval_tasks: int = field(20, "validation tasks per score", bounds="[1, inf)")
    eval_seed: int = field(4321, "seed of the validation tasks (never the meta-test's)", bounds="[0, 4294967295]")
    metatest_seed: int = field(1234, "seed of the meta-test tasks and episodes (fixed across runs)",
                               bounds="[0, 4294967295]")
    threads: int = field(1, "torch CPU threads (1 degrades gracefully when other processes share the cores; "
                            "docs/benchmarks.md)", bounds="[1, inf)")

    #: the field whose value selects the preset (:mod:`metarl.presets`)
    preset_key: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        """Lists given for tuple settings become tuples (``hidden_sizes=[64, 64]`` as in YAML)."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (list, str)):
                object.__setattr__(self, f.name, _coerce(value, hints[f.name]))

    def preset_name(self) -> str | None:
        """The value of the setting that selects the preset, as the presets' key: the family id, or the dataset
        (several datasets: their names joined by ``+``, as ``clinc150+banking77``)."""
        return preset_name(getattr(self, self.preset_key, None)) if self.preset_key else None

    def unused_settings(self, algo: str) -> set[str]:
        """The settings a run of ``algo`` with these settings never reads (another learner's or dataset's): left
        out of ``--help`` and of the printed settings, still accepted and saved."""
        return set()

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming any setting that cannot train."""
        check_config(self)
        if self.eval_every:
            check_validation_seed(self.eval_seed, self.metatest_seed)


@dataclass
class EnvRunConfig(RunConfig):
    """A run on a task family (a Gymnasium env with the task protocol)."""

    env: str = field("metarl/Navigation2D-v0", "task family id (or 'module:Id-v0' for your own family)")
    env_kwargs: dict = field({}, "constructor kwargs of the family (command line: --env-kwargs KEY=VALUE ...)",
                             flag=False)
    max_episode_steps: int | None = field(None, "horizon (default: the family's registered max_episode_steps)",
                                          bounds="[1, inf)")

    device: Literal["cpu", "cuda", "auto"] = field("cpu", "where networks, adaptation and the outer updates run "
                                                         "(auto: cuda when available); sampling stays on the CPU")
    sampler: Literal["local", "ray"] = field("local", "where episodes are sampled: this process, or Ray workers "
                                                       "(metarl[ray]; the same episodes)")
    num_workers: int = field(2, "--sampler ray: worker processes (each samples a shard of the tasks)",
                             bounds="[1, inf)")
    ray_address: str | None = field(None, "--sampler ray: the Ray cluster to join (default: start a local one "
                                          "with this machine's cores)")
    worker_cpus: int | None = field(None, "--sampler ray: CPUs each worker reserves and steps its physics with "
                                          "(default: this machine's cores / num_workers; 1 on a cluster)",
                                    bounds="[1, inf)")
    worker_timeout: float = field(300.0, "--sampler ray: seconds a worker may take for its shard before it counts "
                                         "as hung (killed, replaced, the shard sampled again)", bounds="(0, inf)")
    worker_retries: int = field(3, "--sampler ray: fresh workers a failing shard gets before the run stops",
                                bounds="[0, inf)")
    metatest_protocol: Literal["own", "metaworld"] = field(
        "own", "the final meta-test's protocol: the algorithm's own, or also Meta-World's (every test task: 10 "
               "adaptation episodes, 3 evaluation episodes ending at success; metarl.protocols)")

    preset_key: typing.ClassVar[str] = "env"


# ----------------------------------------------------------------------------------------------
# checking


_INTERVAL = re.compile(r"^([\[(])\s*(-?inf|[-+0-9.e]+)\s*,\s*(-?inf|[-+0-9.e]+)\s*([\])])$")


def _parse_bounds(bounds: str) -> tuple[float, float, bool, bool]:
    match = _INTERVAL.match(bounds.strip())
    if match is None:
        raise ValueError(f"malformed bounds {bounds!r}")
    low_c, low, high, high_c = match.groups()
    return float(low), float(high), low_c == "[", high_c == "]"


def _describe(kind: str, bounds: str | None) -> str:
    if bounds is None:
        return "a finite number" if kind == "number" else f"an {kind}"
    low, high, low_closed, high_closed = _parse_bounds(bounds)
    if math.isinf(high):
        if low == 0 and not low_closed or (kind == "integer" and low == 1 and low_closed):
            return f"a positive {kind}"
        if low == 0 and low_closed:
            return f"a non-negative {kind}"
        return f"{'an' if kind == 'integer' else 'a'} {kind} >{'=' if low_closed else ''} {low:g}"
    return f"{'an' if kind == 'integer' else 'a'} {kind} in {bounds}"


def in_bounds(value: float, bounds: str | None) -> bool:
    """Whether ``value`` lies in ``bounds`` (``"(0, inf)"``, ``"[1, 10]"``, ...; ``None``: any finite number)."""
    if bounds is None:
        return math.isfinite(value)
    low, high, low_closed, high_closed = _parse_bounds(bounds)
    if math.isnan(value) or (math.isinf(value) and not (value == high and high_closed)):
        return False
    above = value >= low if low_closed else value > low
    below = value <= high if high_closed else value < high
    return above and below


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value(name: str, value: Any, tp: Any, bounds: str | None) -> None:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _check_value(name, value, inner[0], bounds)
        return
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{name} must be one of {list(args)}, got {value!r}")
        return
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false, got {value!r}")
        return
    if tp is int:
        if not _is_int(value) or not in_bounds(value, bounds):
            raise ValueError(f"{name} must be {_describe('integer', bounds)}, got {value!r}")
        return
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not in_bounds(float(value), bounds):
            raise ValueError(f"{name} must be {_describe('number', bounds)}, got {value!r}")
        return
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {value!r}")
        return
    if origin is tuple:
        if not isinstance(value, tuple) or not value:
            raise ValueError(f"{name} must be a non-empty sequence, got {value!r}")
        for item in value:
            _check_value(name, item, args[0], bounds)
        return
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a mapping, got {value!r}")


def check_config(config: Any) -> None:
    """Check every field of a config dataclass against its type and ``bounds``.

    Raises:
        ValueError / TypeError: naming the first setting that is out of range or of the wrong type.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        _check_value(f.name, getattr(config, f.name), hints[f.name], f.metadata.get("bounds"))


# ----------------------------------------------------------------------------------------------
# dict <-> dataclass


def config_to_dict(config: Any) -> dict[str, Any]:
    """The settings as plain JSON/YAML values (tuples as lists)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _coerce(value: Any, tp: Any) -> Any:
    """Lists back to tuples, ints to floats where the field is a float (YAML/JSON round trips)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return value if value is None or len(inner) != 1 else _coerce(value, inner[0])
    if origin is tuple and isinstance(value, list):
        return tuple(_coerce(v, args[0]) for v in value)
    if origin is tuple and isinstance(value, str) and args[0] is not float and args[0] is not int:
        return (value,)  # one name where several may be given (``dataset="omniglot"``, a run saved before)
    if tp is float and _is_int(value):
        return float(value)
    return value


def config_from_dict(cls: type[C], values: Mapping[str, Any], *, where: str = "settings", strict: bool = True) -> C:
    """Build config ``cls`` from plain values; renamed settings of earlier versions are accepted.

    Args:
        cls: the config dataclass.
        values: settings by name.
        where: where they came from, for the error message.
        strict: ``False`` skips names that are not settings (a checkpoint's extra keys such as ``algo``).

    Raises:
        ValueError: a name that is not a setting of ``cls``.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        key = RENAMED_SETTINGS.get(key, key)
        if key not in names and not strict:
            continue
        if key not in names:
            close = [n for n in sorted(names) if key in n or n in key]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown setting {key!r} in {where}{hint}; the settings are listed by --help")
        out[key] = _coerce(value, hints[key])
    return cls(**out)  # type: ignore[call-arg]


# ----------------------------------------------------------------------------------------------
# command line


def _base_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return tp


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _number(tp: type) -> Any:
    def parse(text: str) -> Any:
        if tp is int and text.lower() in ("none",):
            return None
        try:
            return tp(text)
        except ValueError:
            kind = "an integer" if tp is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None

    parse.__name__ = tp.__name__
    return parse


class CommandParser(argparse.ArgumentParser):
    """The parser of every ``metarl`` subcommand: flags are never abbreviated (``--data`` is not ``--dataset``),
    and a mistake is one line naming it and pointing at ``--help`` (no usage dump)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        raise ValueError(f"{self.prog}: {message} (see {self.prog} --help)")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, defaults: Mapping[str, Any],
                         many: Mapping[str, str] | None = None, hidden: Sequence[str] = ()) -> None:
    """One flag per field of config ``cls``; flags not given are absent from the parsed namespace.

    ``defaults`` are the values the run would use without the flag (generic, preset or config file):
    ``--help`` shows them. ``many``: fields whose flag takes several values (a list), with the sentence that
    says what several do (``{"seed": "several: one run each"}``). ``hidden``: fields whose flag is accepted but
    left out of ``--help`` (settings the chosen learner does not read).
    """
    many = dict(many or {})
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("flag", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = _base_type(hints[f.name])
        default = defaults.get(f.name)
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        help_text = f.metadata.get("help", "")
        if many.get(f.name):
            help_text += f"; {many[f.name]}"
        if default is not None or "default" not in help_text:  # a None default is described by the help itself
            help_text += f" (default: {shown})"
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS,
                                      help=argparse.SUPPRESS if f.name in hidden else help_text.replace("%", "%%"))
        if f.name in many and tp in (int, float):
            parser.add_argument(flag, type=_number(tp), nargs="+", metavar=tp.__name__.upper(), **kwargs)
        elif tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(tp) is typing.Literal:
            parser.add_argument(flag, choices=list(typing.get_args(tp)), **kwargs)
        elif typing.get_origin(tp) is tuple and typing.get_origin(typing.get_args(tp)[0]) is typing.Literal:
            parser.add_argument(flag, choices=list(typing.get_args(typing.get_args(tp)[0])), nargs="+", **kwargs)
        elif typing.get_origin(tp) is tuple:
            inner = typing.get_args(tp)[0]
            parser.add_argument(flag, type=_number(inner) if inner in (int, float) else inner, nargs="+",
                                metavar=f.name.upper(), **kwargs)
        elif tp in (int, float):
            parser.add_argument(flag, type=_number(tp), metavar=tp.__name__.upper(), **kwargs)
        else:
            parser.add_argument(flag, **kwargs)
