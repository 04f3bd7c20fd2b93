"""The run directory: atomic file writes, a lock against two processes, and its settings file.

Every file of a run (checkpoints, ``metatest.json``, ``config.yaml``) is written to a temporary
file beside it and moved into place with ``os.replace``, so an interrupted write leaves the
previous version. Temporary files get the permissions an ordinary ``open`` would (the umask's),
not ``mkstemp``'s 0600. A run holds an exclusive ``flock`` on ``DIR/.lock`` while it trains, so a
second process resuming the same directory is refused instead of overwriting it; the lock goes
with the process, however it ends.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

__all__ = ["RunDirError", "atomic_write", "write_json_atomic", "write_yaml_atomic", "lock_run_dir",
           "remove_stale_temporaries", "prepare_run_dir", "CONFIG_NAME", "LOCK_NAME"]

CONFIG_NAME = "config.yaml"
LOCK_NAME = ".lock"


class RunDirError(OSError):
    """The run directory cannot be created, written or locked; the message says what to do."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno N]" prefix
        return self.strerror or super().__str__()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def describe_os_error(exc: OSError, path: str | os.PathLike) -> str:
    """One line for a failed write to ``path``, with the fix."""
    if exc.errno == errno.ENOSPC:
        return f"no space left on the disk of {path}: free space or choose another --logdir"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write to {path} (permission denied): choose a writable --logdir"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"{path} is not a directory (a file of that name exists): choose another --logdir"
    return f"cannot write to {path} ({exc.strerror or exc}): choose another --logdir"


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(file)`` on a temporary file, fsync it and move it into place.

    Raises:
        RunDirError: the directory is not writable or the disk is full (the old file is kept).
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise RunDirError(exc.errno, describe_os_error(exc, path.parent)) from exc
    except RuntimeError as exc:  # torch.save reports a failed write as "[enforce fail at inline_container.cc]"
        if "write" in str(exc) or "enforce fail" in str(exc):
            raise RunDirError(errno.EIO, f"writing {path} failed (is the disk full?): free space or choose "
                                         "another --logdir") from exc
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json_atomic(path: str | os.PathLike, data: Any, make_parents: bool = False) -> Path:
    """Write ``data`` as indented JSON, atomically (``make_parents``: create missing parent folders first)."""
    if make_parents:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def write_yaml_atomic(path: str | os.PathLike, data: Any, header: str = "", make_parents: bool = False) -> Path:
    """Write ``data`` as YAML (keys in the given order), atomically, after a comment ``header``."""
    if make_parents:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    text = header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    return atomic_write(path, lambda f: f.write(text.encode()))


def remove_stale_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Delete ``*.tmp`` files left by writes that were interrupted (call with the lock held)."""
    removed = []
    for path in Path(run_dir).glob("*.tmp"):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def prepare_run_dir(run_dir: str | os.PathLike) -> Path:
    """Create the run directory (and parents).

    Raises:
        RunDirError: it is a file, or cannot be created.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(errno.ENOTDIR, f"--logdir {run_dir} is a file, not a directory: choose another --logdir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(exc.errno, describe_os_error(exc, run_dir)) from exc
    if not os.access(run_dir, os.W_OK):
        raise RunDirError(errno.EACCES, describe_os_error(PermissionError(errno.EACCES, "denied"), run_dir))
    return run_dir


@contextmanager
def lock_run_dir(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``run_dir`` for the duration of the block.

    Raises:
        RunDirError: another process holds it (the message names its pid).
    """
    run_dir = prepare_run_dir(run_dir)
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise RunDirError(exc.errno, describe_os_error(exc, run_dir)) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirError(errno.EBUSY, f"{run_dir} is in use by another metarl process (pid {holder}); wait for "
                                           "it to finish or stop it, or choose another --logdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield run_dir
    finally:
        os.close(fd)  # releases the lock
