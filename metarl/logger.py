"""TensorBoard logging with the tag names RL users already read.

Scalars go under namespaces (``rollout/``, ``train/``, ``time/``, ``metatest/``) with environment
steps (or meta-iterations for supervised learners) as the x axis; hyperparameters are written once
as a Markdown table under the ``hyperparameters`` text tag.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

__all__ = ["Logger", "hparams_markdown"]


def hparams_markdown(config: Mapping[str, Any]) -> str:
    """A Markdown table of the run's settings."""
    rows = "\n".join(f"|{k}|{v}|" for k, v in config.items())
    return "|param|value|\n|-|-|\n" + rows


def _wait_for_a_later_file_name(logdir: Path) -> None:
    """Wait (at most a second) until a new event file's name sorts after every existing one's.

    TensorBoard reads a directory's event files in name order, and the names are
    ``events.out.tfevents.<unix second>.<host>.<pid>.<counter>``: a file started in the same second
    as an earlier one in the same process can sort before it (counter "10" < "9"), and TensorBoard
    would then drop the earlier file's points as orphaned. Starting a new file in a later second
    than the newest existing one keeps a resumed run's curve whole.
    """
    seconds = []
    for path in logdir.glob("events.out.tfevents.*"):
        field = path.name.split(".")[3]
        if field.isdigit():
            seconds.append(int(field))
    if seconds:
        wait = max(seconds) + 1 - time.time()
        if 0 < wait <= 1.0:
            time.sleep(wait)


class Logger:
    """Writes scalars and text to TensorBoard event files in ``logdir``."""

    def __init__(self, logdir: str | os.PathLike, purge_step: int | None = None):
        # purge_step drops events past a resumed run's checkpoint, so a resumed curve has no doubled points.
        _wait_for_a_later_file_name(Path(logdir))
        self.writer = SummaryWriter(log_dir=str(logdir), purge_step=purge_step, flush_secs=10)

    def hparams(self, config: Mapping[str, Any]) -> None:
        self.writer.add_text("hyperparameters", hparams_markdown(config))

    def scalars(self, metrics: Mapping[str, float], step: int) -> None:
        """Log each finite metric at x = ``step``; names without a namespace go under ``train/``."""
        for key, value in metrics.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            tag = key if "/" in key else f"train/{key}"
            self.writer.add_scalar(tag, float(value), global_step=step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
