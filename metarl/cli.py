"""The ``metarl`` command line (its help text is ``USAGE`` below)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from metarl.checkpoint import CheckpointError
from metarl.errors import NonFiniteError, SamplerWorkerError, TrainingInterrupted
from metarl.launcher import launch
from metarl.tasks import list_families

__all__ = ["main", "train_main", "fewshot_main", "continual_main"]

COMMANDS = "train | fewshot | continual | evaluate | plot | envs"

USAGE = """usage: metarl {train | fewshot | continual | evaluate | plot | envs} [options]

  metarl train --algo maml-trpo --env metarl/Navigation2D-v0 --seed 0 --logdir runs/nav   # meta-RL
  metarl train --resume runs/nav                        # continue a stopped run (any kind; all its seeds)
  metarl train --config runs/nav/config.yaml --logdir runs/nav2      # rerun a run's settings
  metarl fewshot --algo maml --dataset sinusoid         # few-shot learners (--data DIR for your files)
  metarl continual --algo oml --dataset omniglot        # continual learners (OML, ER, baselines)
  metarl evaluate runs/nav [--env ID] [--tasks N] [--video out.mp4]   # meta-test a trained policy again
  metarl plot runs/nav runs/nav-ppo -o fig.png          # learning and adaptation curves as a PNG
  metarl envs                                           # the registered task families

Every subcommand takes --algo (your own: --algo your_module:name), --env for task families, --dataset
for data, --seed S [S ...], --logdir DIR and --help (which shows the settings the run would use).
A mistake of yours ends in one line naming it and the fix; METARL_DEBUG=1 shows the traceback instead.
"""


def train_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``metarl train``: meta-train an algorithm; returns the meta-test result."""
    return launch("train", argv)


def fewshot_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``metarl fewshot``: meta-train a few-shot learner; returns the meta-test result."""
    return launch("fewshot", argv)


def continual_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``metarl continual``: train a continual learner's representation; returns the meta-test result."""
    return launch("continual", argv)


def _error(message: str, code: int) -> int:
    print(f"metarl: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metarl`` console command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        try:
            print(USAGE)
        except BrokenPipeError:  # `metarl --help | head`: the reader left, nothing is wrong
            sys.stdout = open(os.devnull, "w")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if os.environ.get("METARL_DEBUG"):
        return _dispatch(command, rest)
    import gymnasium as gym
    import yaml

    try:
        return _dispatch(command, rest)
    except NonFiniteError as exc:
        return _error(f"training stopped: {exc}", 1)
    except SamplerWorkerError as exc:  # a family failing on remote workers: its traceback is the message
        return _error(f"training stopped: {exc}", 1)
    except FloatingPointError as exc:
        return _error(f"stopped: {exc}", 1)
    except TrainingInterrupted as exc:
        return _error(f"interrupted at meta-iteration {exc.iteration}; the state is saved: continue with "
                      f"metarl train --resume {exc.logdir}", 130)
    except KeyboardInterrupt:
        return _error("interrupted before training started; nothing was saved", 130)
    except (ValueError, TypeError, CheckpointError, OSError, gym.error.Error, yaml.YAMLError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _error(f"error: {text}", 2)


def _dispatch(command: str, rest: list[str]) -> int:
    if command == "train":
        train_main(rest)
    elif command == "fewshot":
        fewshot_main(rest)
    elif command == "continual":
        continual_main(rest)
    elif command == "evaluate":
        from metarl.evaluation import evaluate_main

        evaluate_main(rest)
    elif command == "plot":
        from metarl.plotting import plot_main

        plot_main(rest)
    elif command == "envs":
        import importlib.util

        from metarl.envs import EXTRA_FAMILIES

        for env_id in list_families():
            extra = EXTRA_FAMILIES.get(env_id)
            missing = extra is not None and importlib.util.find_spec(extra) is None
            print(f"{env_id}  (needs: pip install 'metarl[{extra}]')" if missing else env_id)
    else:
        return _error(f"unknown command {command!r}; choose from {COMMANDS}", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
