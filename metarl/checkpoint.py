"""Atomic, resumable checkpoints.

A checkpoint is one ``torch.save`` file holding the model and optimiser state, the iteration,
the RNG states and the run's config. It is written to a temporary file in the same directory and
moved into place with ``os.replace``, so a kill during a save leaves the previous checkpoint
loadable.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.rundir import atomic_write

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "CHECKPOINT_NAME", "BEST_CHECKPOINT_NAME", "rng_state", "set_rng_state"]

CHECKPOINT_NAME = "checkpoint.pt"
#: a run's best validation state (written by the outer loop with ``eval_every``)
BEST_CHECKPOINT_NAME = "best.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not a metarl checkpoint."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + fsync + ``os.replace``).

    Raises:
        metarl.rundir.RunDirError: the directory is not writable or the disk is full (the previous
            checkpoint is kept).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: torch.save({"format": "metarl-checkpoint-v1", **state}, f))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a directory means ``DIR/checkpoint.pt``.

    Raises:
        CheckpointError: the file is missing, truncated/corrupt, or not a metarl checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; pass the log directory of a run that saved one")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            AttributeError, ImportError, IndexError, TypeError, MemoryError, OverflowError, AssertionError) as exc:
        # (a corrupt length field makes the unpickler ask for absurd sizes: MemoryError / OverflowError)
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); it may be truncated or corrupt - "
            "delete it to start afresh, or point --resume at another run"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != "metarl-checkpoint-v1":
        raise CheckpointError(f"{path} is not a metarl checkpoint")
    missing = [key for key in ("algorithm", "iteration", "config") if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is damaged - point --resume at another run")
    return state


def rng_state(rng: np.random.Generator, torch_gen: torch.Generator | None = None) -> dict[str, Any]:
    """Snapshot of a NumPy generator (and optional torch generator) for a checkpoint."""
    out: dict[str, Any] = {"numpy": rng.bit_generator.state}
    if torch_gen is not None:
        out["torch"] = torch_gen.get_state()
    return out


def set_rng_state(state: dict[str, Any], rng: np.random.Generator, torch_gen: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` saved."""
    rng.bit_generator.state = state["numpy"]
    if torch_gen is not None and "torch" in state:
        torch_gen.set_state(state["torch"])
