"""TensorBoard logging with the tag names RL users already read.

Scalars go under namespaces (``rollout/``, ``train/``, ``time/``, ``metatest/``) with environment
steps (or meta-iterations for supervised learners) as the x axis; hyperparameters are written once
as a Markdown table under the ``hyperparameters`` text tag.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from torch.utils.tensorboard import SummaryWriter

__all__ = ["Logger", "hparams_markdown"]


def hparams_markdown(config: Mapping[str, Any]) -> str:
    """A Markdown table of the run's settings."""
    rows = "\n".join(f"|{k}|{v}|" for k, v in config.items())
    return "|param|value|\n|-|-|\n" + rows


class Logger:
    """Writes scalars and text to TensorBoard event files in ``logdir``."""

    def __init__(self, logdir: str | os.PathLike, purge_step: int | None = None):
        # purge_step drops events past a resumed run's checkpoint, so a resumed curve has no doubled points.
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
