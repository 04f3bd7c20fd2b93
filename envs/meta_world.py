"""Meta-World's ML1 and ML10 benchmarks as metarl families (the ``metarl[metaworld]`` extra).

``metarl/MetaWorldML1-v0`` (``env_name=``, default ``"reach-v3"``): one manipulation task class, 50
training and 50 test goal positions, as ``metaworld.ML1(env_name, seed=benchmark_seed)`` draws them.
``metarl/MetaWorldML10-v0``: ten training classes (50 goals each) and five held-out test classes.
Both declare ``train_tasks`` and ``test_tasks``, so meta-training draws only training tasks and the
meta-test only test tasks; the meta-test reports Meta-World's success rate (``info["success"]`` at
any step of the episode) next to the return. Observations are Meta-World's 39-dim partially
observable ones (the goal hidden), actions 4-dim in ``[-1, 1]``; the horizon is Meta-World's 500.

A task is ``Task('MetaWorldML1', name='reach-v3', split='train', index=7)``: the benchmark's own
task ``index`` of that split, so the same ``benchmark_seed`` gives the same goals everywhere.
Meta-World 3.x pins MuJoCo 3.3.0: installing the extra moves MuJoCo to that version (metarl's own
families run on it too).
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.envs.meta_world_batched import PORTED_CLASSES, MetaWorldBatchedEnv
from metarl.tasks import Task, check_positive_int, check_rng

__all__ = ["MetaWorldML1Env", "MetaWorldML10Env", "metaworld_benchmark"]

_EXTRA = "Meta-World families need the metaworld extra: pip install 'metarl[metaworld]'"


def _import_metaworld() -> Any:
    try:
        import metaworld
    except ImportError as exc:
        raise gym.error.DependencyNotInstalled(_EXTRA) from exc
    return metaworld


@functools.lru_cache(maxsize=8)
def metaworld_benchmark(benchmark: str, env_name: str | None, seed: int) -> Any:
    """Meta-World's benchmark object (cached: building ML10 takes seconds)."""
    metaworld = _import_metaworld()
    if benchmark == "ML1":
        names = sorted(metaworld.ML1.ENV_NAMES) if hasattr(metaworld.ML1, "ENV_NAMES") else None
        try:
            return metaworld.ML1(env_name, seed=seed)
        except (KeyError, ValueError, AssertionError) as exc:
            raise ValueError(f"Meta-World has no ML1 task class {env_name!r}"
                             + (f"; choose from {names}" if names else " (e.g. 'reach-v3', 'push-v3')")) from exc
    return metaworld.ML10(seed=seed)


class _MetaWorldFamily(gym.Env):
    """A Meta-World benchmark's tasks behind the task protocol; one Meta-World env per task class, made on first use."""

    family_name = ""
    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, benchmark: str, env_name: str | None, benchmark_seed: int, render_mode: str | None,
                 task: Any):
        if isinstance(benchmark_seed, bool) or not isinstance(benchmark_seed, (int, np.integer)) or benchmark_seed < 0:
            raise ValueError(f"{self.family_name}: benchmark_seed must be a non-negative integer, got {benchmark_seed!r}")
        self._benchmark = metaworld_benchmark(benchmark, env_name, int(benchmark_seed))
        self._classes = {**self._benchmark.train_classes, **self._benchmark.test_classes}
        self._mw_tasks = {"train": list(self._benchmark.train_tasks), "test": list(self._benchmark.test_tasks)}
        self.train_tasks = [Task.create(self.family_name, name=t.env_name, split="train", index=i)
                            for i, t in enumerate(self._mw_tasks["train"])]
        self.test_tasks = [Task.create(self.family_name, name=t.env_name, split="test", index=i)
                           for i, t in enumerate(self._mw_tasks["test"])]
        self.render_mode = render_mode
        self._envs: dict[str, Any] = {}
        self._task: Task | None = None
        self.set_task(self.train_tasks[0] if task is None else task)
        self.observation_space = self._current.observation_space
        self.action_space = self._current.action_space

    # ----- the task protocol -----------------------------------------------------------------------------
    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        """``n`` training tasks drawn with replacement (meta-training and the meta-test use the fixed splits)."""
        n = check_positive_int("n", n)
        return [self.train_tasks[i] for i in check_rng(rng).integers(0, len(self.train_tasks), size=n)]

    def as_task(self, task: Any) -> Task:
        if isinstance(task, dict):
            return Task.create(self.family_name, **task)
        return task

    def validate_task(self, task: Any) -> Task:
        task = self.as_task(task)
        if not isinstance(task, Task) or task.family != self.family_name:
            raise ValueError(f"{self.family_name} runs its own tasks (from train_tasks / test_tasks), got {task!r}")
        params = dict(task.params)
        split, index = params.get("split"), params.get("index")
        if split not in self._mw_tasks or not isinstance(index, int) or not 0 <= index < len(self._mw_tasks[split]):
            raise ValueError(f"{self.family_name} task needs split 'train' or 'test' and an index within it "
                             f"({len(self.train_tasks)} / {len(self.test_tasks)} tasks), got {task!r}")
        if params.get("name") != self._mw_tasks[split][index].env_name:
            raise ValueError(f"{task!r}: task {index} of the {split} split is a {self._mw_tasks[split][index].env_name} "
                             "task (another benchmark_seed or env_name?)")
        return task

    def set_task(self, task: Any) -> None:
        task = self.validate_task(task)
        mw_task = self._mw_tasks[task["split"]][task["index"]]
        env = self._envs.get(mw_task.env_name)
        if env is None:
            env = self._envs[mw_task.env_name] = self._classes[mw_task.env_name](render_mode=self.render_mode)
        env.set_task(mw_task)
        self._current, self._task = env, task

    def get_task(self) -> Task:
        assert self._task is not None
        return self._task

    # ----- the env ---------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self._current.reset(seed=seed)
        return np.asarray(obs, dtype=np.float64), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self._current.step(np.asarray(action, dtype=np.float32))
        return np.asarray(obs, dtype=np.float64), float(reward), bool(terminated), bool(truncated), info

    def render(self) -> Any:
        return self._current.render()

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    def batched(self, tasks: list[Any], episodes_per_task: int, *, nthread: int | None = None
                ) -> MetaWorldBatchedEnv | None:
        """The batched Meta-World backend (:mod:`metarl.envs.meta_world_batched`) when every task's class has a
        port there, else ``None`` (the sampler then runs one Meta-World env per simulation)."""
        if {self.validate_task(t)["name"] for t in tasks} <= set(PORTED_CLASSES):
            return MetaWorldBatchedEnv(self, tasks, episodes_per_task, nthread=nthread)
        return None

    #: the info entry that says whether the episode succeeded (Meta-World's protocol: at any step)
    success_info_key = "success"
    #: each simulation is a whole Meta-World env (~21 MB): meta-tests run at most this many at once
    max_simulations = 200


class MetaWorldML1Env(_MetaWorldFamily):
    """Meta-World ML1: the goal positions of one task class (``env_name``), 50 train and 50 test.

    Args:
        env_name: the Meta-World v3 task class (``"reach-v3"``, ``"push-v3"``, ``"pick-place-v3"``, ...).
        benchmark_seed: the seed Meta-World draws the goal positions with.
        render_mode: ``"rgb_array"`` to render.
    """

    family_name = "MetaWorldML1"

    def __init__(self, env_name: str = "reach-v3", benchmark_seed: int = 0, render_mode: str | None = None,
                 task: Any = None):
        super().__init__("ML1", env_name, benchmark_seed, render_mode, task)


class MetaWorldML10Env(_MetaWorldFamily):
    """Meta-World ML10: ten training task classes and five held-out test classes, 50 goals each.

    Args:
        benchmark_seed: the seed Meta-World draws the goal positions with.
        render_mode: ``"rgb_array"`` to render.
    """

    family_name = "MetaWorldML10"

    def __init__(self, benchmark_seed: int = 0, render_mode: str | None = None, task: Any = None):
        super().__init__("ML10", None, benchmark_seed, render_mode, task)

