"""The ``metarl`` command line.

    metarl train --algo maml-trpo --env metarl/Navigation2D-v0 --seed 0 --logdir runs/nav
    metarl train --resume runs/nav                # continue a stopped run
    metarl envs                                   # list registered task families
    metarl fewshot --method maml --dataset sinusoid ...   (supervised few-shot learners)

``scripts/train.py`` is the same as ``metarl train``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metarl.checkpoint import CheckpointError, load_checkpoint
from metarl.config import add_dataclass_arguments, dataclass_from_args
from metarl.tasks import list_families
from metarl.system import keep_freed_memory
from metarl.training import BEST_CHECKPOINT_NAME, MetaAlgorithm, NonFiniteError, run_meta_training

__all__ = ["main", "train_main", "ALGORITHMS", "AlgorithmSpec", "parse_env_kwargs", "register_algorithm"]


@dataclass(frozen=True)
class AlgorithmSpec:
    """How the CLI builds an algorithm: its settings dataclass, constructor and default length."""

    config_cls: Callable[[], Any]
    make: Callable[[Any], MetaAlgorithm]
    default_iterations: Callable[[Any], int]
    #: ``(env_id, env_kwargs) -> {field: value}``: a family's default settings, applied before the
    #: flags are parsed (so a flag still overrides them)
    defaults_for_env: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None


def _maml_defaults(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    from metarl.agents.maml import family_defaults

    return {k: v for k, v in family_defaults(env_id, env_kwargs).items() if k != "iterations"}


def _maml_trpo() -> AlgorithmSpec:
    from metarl.agents.maml import MAMLConfig, MAMLTRPO, default_iterations

    return AlgorithmSpec(MAMLConfig, MAMLTRPO, default_iterations, _maml_defaults)


def _maml_ppo() -> AlgorithmSpec:
    from metarl.agents.maml import MAMLPPO, MAMLPPOConfig, default_iterations

    return AlgorithmSpec(MAMLPPOConfig, MAMLPPO, default_iterations, _maml_defaults)


def _rl2_ppo() -> AlgorithmSpec:
    from metarl.agents.rl2 import RL2Config, RL2PPO, default_iterations, family_defaults

    def defaults(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in family_defaults(env_id, env_kwargs).items() if k != "iterations"}

    return AlgorithmSpec(RL2Config, RL2PPO, default_iterations, defaults)


#: algorithm name -> lazy spec factory (lazy so ``metarl envs`` does not import the agents)
ALGORITHMS: dict[str, Callable[[], AlgorithmSpec]] = {
    "maml-trpo": _maml_trpo,
    "maml-ppo": _maml_ppo,
    "rl2-ppo": _rl2_ppo,
}


def register_algorithm(name: str, spec_factory: Callable[[], AlgorithmSpec]) -> None:
    """Make ``--algo name`` available."""
    ALGORITHMS[name] = spec_factory


def parse_env_kwargs(items: Sequence[str] | None) -> dict[str, Any]:
    """``["k=10", "n=100", "name=foo"]`` -> ``{"k": 10, "n": 100, "name": "foo"}`` (Python literals)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--env-kwargs expects key=value pairs, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _train_parser(algo: str, spec: AlgorithmSpec) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metarl train", description=f"meta-train {algo}")
    parser.add_argument("--algo", default=algo, choices=sorted(ALGORITHMS), help="meta-learning algorithm")
    parser.add_argument("--seed", type=int, default=0, help="seed of tasks, episodes and network init")
    parser.add_argument("--logdir", type=Path, default=None,
                        help="TensorBoard events, checkpoints and metatest.json (default runs/<algo>-<env>-s<seed>)")
    parser.add_argument("--iterations", type=int, default=None, help="meta-iterations (default: the algorithm's)")
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR",
                        help="continue the stopped run in DIR with its saved settings")
    parser.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE",
                        help="family constructor kwargs, e.g. --env-kwargs k=10 n=100")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="meta-iterations between checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--eval-every", type=int, default=None, metavar="N",
                        help="score the meta-policy on validation tasks every N meta-iterations, keep the best "
                             "in DIR/best.pt and meta-test it too (DIR/metatest_best.json); 0: off (default; "
                             "a resumed run keeps its own)")
    parser.add_argument("--eval-tasks", type=int, default=None,
                        help="validation tasks per score (default 20; a resumed run keeps its own)")
    parser.add_argument("--eval-seed", type=int, default=None,
                        help="seed of the validation tasks, not the meta-test's (default 4321; a resumed run keeps its own)")
    add_dataclass_arguments(parser, spec.config_cls, skip=("env_kwargs",))
    return parser


def _config_from_checkpoint(spec: AlgorithmSpec, saved: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in names}
    return spec.config_cls(**values)


def load_run(run_dir: str | Path, weights: bool = True, best: bool = False) -> MetaAlgorithm:
    """The algorithm of a ``metarl train`` run directory, rebuilt from its settings and checkpoint.

    With ``weights=False`` it is the run's freshly initialised algorithm (same settings and seed);
    with ``best=True`` it holds the best validation state (``best.pt`` of a run with ``--eval-every``).

    Raises:
        CheckpointError: no readable checkpoint in ``run_dir`` (or no ``best.pt`` with ``best=True``).
        ValueError: the checkpoint names an unknown algorithm.
    """
    if best and not (Path(run_dir) / BEST_CHECKPOINT_NAME).is_file():
        raise CheckpointError(f"no {BEST_CHECKPOINT_NAME} in {run_dir}: only runs trained with --eval-every keep "
                              "a best validation checkpoint")
    checkpoint = load_checkpoint(Path(run_dir) / BEST_CHECKPOINT_NAME if best else run_dir)
    saved = checkpoint["config"]
    algo = saved.get("algo", "maml-trpo")
    if algo not in ALGORITHMS:
        raise ValueError(f"{run_dir}: unknown algorithm {algo!r} in the checkpoint; choose from {sorted(ALGORITHMS)}")
    spec = ALGORITHMS[algo]()
    torch.manual_seed(int(saved.get("seed", 0)))  # the initialisation `metarl train` used
    algorithm = spec.make(_config_from_checkpoint(spec, saved))
    if weights:
        algorithm.load_state_dict(checkpoint["algorithm"])
    return algorithm


def train_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``metarl train``: meta-train an algorithm; returns the meta-test result."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--algo", default="maml-trpo")
    pre.add_argument("--resume", type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    saved: dict[str, Any] | None = None
    saved_iterations: int | None = None
    if known.resume is not None:
        checkpoint = load_checkpoint(known.resume)
        saved = checkpoint["config"]
        # the run's own length; checkpoints of older versions lack it: stop where they stopped
        saved_iterations = int(checkpoint.get("target_iterations", checkpoint["iteration"]))
        known.algo = saved.get("algo", known.algo)
    if known.algo not in ALGORITHMS:
        raise ValueError(f"unknown --algo {known.algo!r}; choose from {sorted(ALGORITHMS)}")
    spec = ALGORITHMS[known.algo]()
    parser = _train_parser(known.algo, spec)
    if spec.defaults_for_env is not None and saved is None:
        env_pre = argparse.ArgumentParser(add_help=False)
        env_pre.add_argument("--env", default=parser.get_default("env"))
        env_pre.add_argument("--env-kwargs", nargs="*", default=None)
        env_args, _ = env_pre.parse_known_args(argv)
        parser.set_defaults(**spec.defaults_for_env(env_args.env, parse_env_kwargs(env_args.env_kwargs)))
    args = parser.parse_args(argv)
    evaluation = {"every": 0, "tasks": 20, "seed": 4321}
    if saved is not None:
        evaluation.update({k: v for k, v in (checkpoint.get("evaluation") or {}).items() if k in evaluation})
    for key in evaluation:
        if getattr(args, f"eval_{key}") is not None:
            evaluation[key] = getattr(args, f"eval_{key}")
    if saved is not None:
        cfg = _config_from_checkpoint(spec, saved)
        seed, logdir = int(saved["seed"]), args.resume
    else:
        cfg = dataclass_from_args(spec.config_cls, args, env_kwargs=parse_env_kwargs(args.env_kwargs))
        seed = args.seed
        env_name = cfg.env.split(":")[-1].replace("/", "-")
        logdir = args.logdir or Path("runs") / f"{known.algo}-{env_name}-s{seed}"
    if args.iterations is not None:
        iterations = args.iterations
    elif saved_iterations is not None:  # resume: the length the run was started (or last resumed) with
        iterations = saved_iterations
    else:
        iterations = spec.default_iterations(cfg)
    threads = getattr(cfg, "threads", None)
    if threads is not None:  # settings with a `threads` field choose torch's CPU threads
        torch.set_num_threads(threads)
    torch.manual_seed(seed)  # network initialisation; everything else draws from the run's generator
    algorithm = spec.make(cfg)
    print(f"metarl: {known.algo} on {cfg.env}, seed {seed}, {iterations} meta-iterations, logdir {logdir}",
          file=sys.stderr)
    keep_freed_memory()  # no page-fault churn from per-iteration arrays (metarl/system.py)
    return run_meta_training(algorithm, iterations=iterations, seed=seed, logdir=logdir,
                             resume=saved is not None, checkpoint_every=args.checkpoint_every,
                             progress=not args.no_progress, eval_every=evaluation["every"],
                             eval_tasks=evaluation["tasks"], eval_seed=evaluation["seed"])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metarl`` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = "train | envs | fewshot"
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: metarl {{{commands}}} [options]\n\n{__doc__}")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "train":
            train_main(rest)
        elif command == "envs":
            print("\n".join(list_families()))
        elif command == "fewshot":
            from metarl.fewshot.train import main as fewshot_main

            fewshot_main(rest)
        else:
            print(f"metarl: unknown command {command!r}; choose from {commands}", file=sys.stderr)
            return 2
    except NonFiniteError as exc:
        print(f"metarl: training stopped: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, CheckpointError) as exc:
        print(f"metarl: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
