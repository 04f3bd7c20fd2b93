"""Importing a user's module named in an id: ``--env my_families:Family-v0``, ``--algo my_algos:fo-maml``.

Every subcommand and the Python API import ``module:Id`` the same way: the current directory is on the
import path (as for ``python -m``), and a module that is not there is one line naming where it looked.
"""

from __future__ import annotations

import importlib
import os
import sys

__all__ = ["import_prefix"]


def import_prefix(qualified: str, what: str) -> str:
    """Import the module before ``:`` in ``qualified`` (if any) and return the id after it.

    Args:
        qualified: ``"module:Id"`` or a plain ``"Id"``.
        what: what the id names, for the error (``"env id"``, ``"algorithm"``).

    Raises:
        ValueError: the module is not on the import path, or importing it failed (its error named).
    """
    if ":" not in qualified:
        return qualified
    module, _, name = qualified.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name in (module, module.split(".")[0]):
            looked = ", ".join(p or "." for p in sys.path[:4])
            raise ValueError(f"cannot import module {module!r} named in {what} {qualified!r}: no {module}.py or package "
                             f"on the import path (looked in {looked}, ...); run from the directory holding it or add "
                             "that directory to PYTHONPATH") from exc
        raise ValueError(f"importing the module of {what} {qualified!r} failed: {exc}") from exc
    except (ImportError, SyntaxError) as exc:
        raise ValueError(f"importing the module of {what} {qualified!r} failed: {type(exc).__name__}: {exc}") from exc
    return name
