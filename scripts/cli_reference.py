"""Write docs/cli.md: the flags of ``metarl train``, ``metarl fewshot`` and ``metarl continual`` side by side,
and the glossary. ``python scripts/cli_reference.py`` (``--check`` exits 1 if docs/cli.md is out of date)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metarl.launcher import DEFAULT_ALGORITHM, _parser
from metarl.registry import algorithm_names, algorithm_record

OUT = Path(__file__).resolve().parents[1] / "docs" / "cli.md"

GLOSSARY = [
    ("task family", "a parameterised Gymnasium env (`metarl/Navigation2D-v0`) or dataset (`omniglot`) whose tasks "
                    "share spaces: `sample_tasks(n, rng)`, `set_task`, `get_task`. `--env` names a family, "
                    "`--dataset` a dataset."),
    ("task", "one member of a family: a goal, a velocity, a set of classes, a sine function."),
    ("support / query", "the data a learner adapts on, and the data its adaptation is judged on."),
    ("adaptation step", "one inner update of a task's parameters on its support data (MAML's gradient step); "
                        "RL^2 and PEARL adapt by reading experience instead."),
    ("trial", "the episodes of one task a recurrent or context-based policy keeps its memory across (RL^2, PEARL)."),
    ("meta-iteration", "one outer update: sample a meta-batch of tasks, adapt to each, update the meta-parameters "
                       "(`--iterations`)."),
    ("preset", "the settings of an algorithm for one family or dataset, in `metarl/presets/<algo>.yaml` (or a "
               "record's own): the settings behind the results, applied before `--config` and the flags."),
    ("meta-test", "the evaluation at the end of a run on held-out tasks of a fixed seed (`--metatest-seed`), "
                  "written to `metatest.json`; `metarl evaluate` repeats it."),
    ("run directory", "`--logdir`: settings (`config.yaml`), checkpoints, TensorBoard events, meta-test; a "
                      "multi-seed run holds one `seed_<s>/` per seed and `seeds.yaml`."),
]


def _flags(command: str) -> dict[str, str]:
    """flag -> help of the subcommand's parser for its default algorithm."""
    algo = DEFAULT_ALGORITHM[command]
    record = algorithm_record(algo)
    defaults = {f: getattr(record.settings_class()(), f) for f in record.settings_class().__dataclass_fields__}
    parser = _parser(command, algo, record, defaults, hide_unused=False)
    out = {}
    for action in parser._actions:
        if action.option_strings and action.help is not argparse.SUPPRESS:
            flag = next(o for o in action.option_strings if o.startswith("--"))
            out[flag] = " ".join((action.help or "").split()).split(" (default")[0]
    return out


def render() -> str:
    commands = ("train", "fewshot", "continual")
    flags = {c: _flags(c) for c in commands}
    order = list(dict.fromkeys(f for c in commands for f in flags[c]))
    rows = []
    for flag in order:
        where = " | ".join("x" if flag in flags[c] else "" for c in commands)
        text = next(flags[c][flag] for c in commands if flag in flags[c])
        rows.append(f"| `{flag}` | {where} | {text} |")
    kinds = "\n".join(f"- `metarl {algorithm_record(algorithm_names(k)[0]).command}`: "
                      f"{', '.join(f'`{n}`' for n in algorithm_names(k))}" for k in ("meta-rl", "few-shot", "continual"))
    glossary = "\n".join(f"- **{term}**: {text}" for term, text in GLOSSARY)
    return f"""# The command line

<!-- written by `python scripts/cli_reference.py`; tests/test_cli.py checks it is current -->

Three subcommands train, one per kind of algorithm, with one vocabulary: `--algo` names the algorithm
(`--method` is the same flag; `your_module:name` imports yours), `--env` a task family, `--dataset` the data
(`--data PATH` your copy of it), `--seed S [S ...]` one run per seed, `--logdir` the run directory, `--resume DIR`
continues any run, `--config FILE` starts from a run's `config.yaml`. A subcommand refuses another kind's
algorithm in one line naming the right subcommand; no flag is abbreviated.

{kinds}

`metarl evaluate DIR` meta-tests a trained meta-RL run again (`--env`, `--tasks`, `--seed`, `--video`),
`metarl plot DIR ... -o fig.png` draws learning and adaptation curves, `metarl envs` lists the families.

## Flags side by side

Every flag of each subcommand's settings; `x`: the subcommand has the flag. `metarl <command> --algo A
--dataset D --help` lists only the flags learner A reads on D, with the defaults of its preset.

| flag | train | fewshot | continual | meaning |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}

## Glossary

{glossary}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.is_file() else ""
        if current != text:
            print(f"{OUT} is out of date: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
