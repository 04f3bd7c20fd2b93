"""Episode sampling on Ray workers, with the local sampler's episodes and fault tolerance (``metarl[ray]``).

``metarl train ... --sampler ray --num-workers N [--ray-address ADDR]``: without an address a local Ray instance
starts with the machine's cores; with one, the run joins that cluster (the family's module must be importable
on its nodes). Each worker process holds a copy of the run's sampler (the family's batched backend) and, each
call, a contiguous shard of the meta-batch's tasks with their reset seeds. The act function (the policy, with
per-task adapted parameters for MAML, the latent tasks for PEARL, the GRU for RL^2) is put in Ray's object
store once per call and read by every worker.

**Same episodes as the local sampler.** The seeds come from the run's generator exactly as the local sampler
draws them; a worker runs the act function on the whole meta-batch's shape (the other shards' observations
zero) with the whole batch's noise generator and keeps its own rows (:meth:`EpisodeSampler.rollout` with a
:class:`~metarl.sampler.Shard`). So every task's episodes, and the run's curve, are the local sampler's,
for any number of workers. The cost: each worker evaluates the policy for the whole batch (cheap against
physics for the families here; docs/benchmarks.md projects where it stops scaling).

**Faults.** A worker whose process dies (or that has not answered within ``worker_timeout`` seconds of sampling;
starting a worker, which imports torch and builds its sampler, has its own limit, ``WORKER_START_TIMEOUT``) is
killed, replaced by a fresh one and its shard is sampled again from the same seeds, so the episodes do not
change. A shard whose sampling raises is retried on a fresh worker too; after ``worker_retries`` failures the
run stops with :class:`SamplerWorkerError`, carrying the worker's own traceback and the tasks it was on (the
last checkpoint is untouched: nothing is saved mid-iteration). A non-finite reward or action is the algorithm's
problem, not the worker's: it stops the run at once, as with the local sampler.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from metarl.errors import NonFiniteError, SamplerWorkerError
from metarl.sampler import ActFn, Episodes, EpisodeSampler, Shard
from metarl.tasks import check_positive_int, check_rng

__all__ = ["RaySampler", "SamplerWorkerError", "concat_episodes"]

_EXTRA = "pip install 'metarl[ray]'"


#: seconds a new worker may take to start (its process, imports and sampler) before the run stops: on a loaded
#: machine this is many seconds, which must not count against ``worker_timeout``, the limit on a shard's sampling
WORKER_START_TIMEOUT = 120.0


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError(f"--sampler ray needs Ray: {_EXTRA}") from exc
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A one-line error now, where ``ray.init`` would wait minutes, if a ``host:port`` address does not answer
    (``auto`` and ``ray://`` addresses are left to Ray)."""
    import socket

    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--ray-address {address!r} is not host:port (or 'auto')")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ValueError(f"no Ray cluster answers at {address} ({exc}); start one with 'ray start --head' there, "
                         "or fix --ray-address") from exc


class SamplerWorker:
    """What runs in a Ray worker process: a copy of the run's sampler (built by ``make_sampler``)."""

    def __init__(self, make_sampler: Callable[[], EpisodeSampler], cpus: int = 1):
        torch.set_num_threads(1)
        os.environ["METARL_CPUS"] = str(cpus)  # the batched MuJoCo backends step with this many threads
        self.sampler = make_sampler()

    def ready(self) -> bool:
        """Answers once the worker has started (its sampler built)."""
        return True

    def rollout(self, act_fn: ActFn, tasks: list[Any], episodes_per_task: int, seeds: np.ndarray,
                generator_seed: int, info_keys: tuple[str, ...], shard: Shard) -> tuple[str, Any]:
        """``("ok", (Episodes, seconds))``, or ``("nonfinite" | "error", message)`` where sampling raised."""
        start = time.perf_counter()
        try:
            episodes = self.sampler.rollout(act_fn, tasks, episodes_per_task, seeds, generator_seed,
                                            info_keys=info_keys, shard=shard)
            return "ok", (episodes, time.perf_counter() - start)
        except NonFiniteError as exc:
            return "nonfinite", str(exc)
        except Exception:  # noqa: BLE001 - the worker's own traceback goes back to the driver
            return "error", traceback.format_exc()


class _RemoteBackend:
    """What :meth:`RaySampler.backend` gives an act function to hold (e.g. RL^2's actor): the worker binds the
    act function to its own backend before sampling (:class:`metarl.sampler._ShardedActFn`)."""

    def __init__(self, num_envs: int):
        self.num_envs = num_envs

    @property
    def active(self) -> np.ndarray:
        raise RuntimeError("this act function is bound to a remote backend: sample with RaySampler.sample")


def concat_episodes(parts: Sequence[Episodes]) -> Episodes:
    """Episodes of consecutive task shards joined along the task axis."""
    def cat(values: list[Any]) -> Any:
        return None if values[0] is None else torch.cat(values, dim=0)

    first = parts[0]
    return Episodes(
        observations=cat([p.observations for p in parts]), actions=cat([p.actions for p in parts]),
        rewards=cat([p.rewards for p in parts]), mask=cat([p.mask for p in parts]),
        tasks=[t for p in parts for t in p.tasks], truncated=cat([p.truncated for p in parts]),
        terminated=cat([p.terminated for p in parts]), final_observations=cat([p.final_observations for p in parts]),
        infos={key: cat([p.infos[key] for p in parts]) for key in first.infos},
    )


class RaySampler:
    """An :class:`~metarl.sampler.EpisodeSampler` whose episodes are sampled on Ray workers.

    Everything but :meth:`sample` (spaces, horizon, task draws, success) is the local sampler's, built on the
    driver with the same ``make_sampler``.

    Args:
        make_sampler: builds the run's sampler (picklable: a class and its arguments, e.g. a
            ``functools.partial``); called once here and once in every worker.
        num_workers: worker processes (at most one shard of tasks each per call; each reserves ``worker_cpus``).
        address: a Ray cluster to join (``ray.init(address=...)``); ``None``: start a local instance with
            this machine's cores (or join the one already running in this process).
        worker_timeout: seconds a shard may take before its worker counts as hung (killed and replaced).
        worker_retries: fresh workers a failing shard is given before the run stops.
        worker_cpus: CPUs each worker reserves and steps its simulations with (MuJoCo backends use that many
            threads); default: this machine's cores shared out for a local instance, 1 on a cluster.
    """

    def __init__(self, make_sampler: Callable[[], EpisodeSampler], num_workers: int = 2, *,
                 address: str | None = None, worker_timeout: float = 300.0, worker_retries: int = 3,
                 worker_cpus: int | None = None):
        ray = import_ray()
        self.num_workers = check_positive_int("num_workers", num_workers)
        if not worker_timeout > 0:
            raise ValueError(f"worker_timeout must be positive seconds, got {worker_timeout}")
        self.worker_timeout, self.worker_retries = float(worker_timeout), int(worker_retries)
        self.local = make_sampler()
        cores = os.cpu_count() or 1
        if worker_cpus is None:
            worker_cpus = 1 if address else max(1, cores // self.num_workers)
        self.worker_cpus = check_positive_int("worker_cpus", worker_cpus)
        self._make_sampler = make_sampler
        if address:
            _check_reachable(address)
        if not ray.is_initialized():
            if address:
                try:
                    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
                except ConnectionError as exc:
                    raise ValueError(f"cannot join the Ray cluster at {address!r}: {exc}; check --ray-address "
                                     "(host:port of its head node, or 'auto'), and where the cluster uses token "
                                     "authentication (Ray >= 2.59), set RAY_AUTH_TOKEN to its token") from exc
            else:  # the driver's import path, so a user's family module imports in the workers too
                path = os.pathsep.join([os.getcwd(), *[p for p in sys.path if p and os.path.isdir(p)]])
                ray.init(num_cpus=max(cores, self.num_workers * self.worker_cpus), include_dashboard=False,
                         logging_level="ERROR", log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": path}})
        self._ray = ray
        self._actor_class = ray.remote(num_cpus=self.worker_cpus, max_restarts=0)(SamplerWorker)
        self.workers = [self._actor_class.remote(self._make_sampler, self.worker_cpus)
                        for _ in range(self.num_workers)]
        self._wait_started(self.workers)
        self.last_fps = float("nan")
        #: the last :meth:`sample` call's wall time, the act function's ``ray.put``, and the workers' own
        #: sampling time (slowest, and summed): the rest is Ray's dispatch and the results' transfer
        self.last_timing: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "local":  # not built yet (an error in __init__)
            raise AttributeError(name)
        return getattr(self.local, name)

    def _wait_started(self, workers: list[Any]) -> None:
        """Block until ``workers`` have started, so that ``worker_timeout`` counts sampling only."""
        refs = [worker.ready.remote() for worker in workers]
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=WORKER_START_TIMEOUT)
        try:
            self._ray.get(ready)
        except self._ray.exceptions.RayActorError as exc:
            raise SamplerWorkerError(f"a Ray sampler worker failed to start: {exc}") from exc
        if len(ready) < len(refs):
            raise SamplerWorkerError(
                f"{len(refs) - len(ready)} Ray sampler worker(s) did not start within {WORKER_START_TIMEOUT:g} s: "
                f"the cluster has no {len(refs)} x {self.worker_cpus} free CPUs, or its nodes cannot import metarl "
                "and the family's module; the last checkpoint is intact")

    def _replace(self, index: int) -> None:
        self._ray.kill(self.workers[index], no_restart=True)
        self.workers[index] = self._actor_class.remote(self._make_sampler, self.worker_cpus)
        self._wait_started([self.workers[index]])

    def backend(self, tasks: Sequence[Any], episodes_per_task: int) -> _RemoteBackend:
        """A stand-in for the backend an act function may hold (the workers run the real ones)."""
        return _RemoteBackend(len(tasks) * episodes_per_task)

    def sample(self, act_fn: ActFn, tasks: Sequence[Any], episodes_per_task: int,
               rng: np.random.Generator, *, info_keys: Sequence[str] = ()) -> Episodes:
        """The local sampler's :meth:`~metarl.sampler.EpisodeSampler.sample`, on the workers: the same draws
        from ``rng``, the same episodes.

        Raises:
            SamplerWorkerError: a shard failed on ``worker_retries`` fresh workers in a row.
            NonFiniteError: a non-finite action, reward or observation (as the local sampler).
        """
        check_positive_int("episodes_per_task", episodes_per_task)
        if len(tasks) == 0:
            raise ValueError("need at least one task to sample")
        rng = check_rng(rng)
        n_tasks = len(tasks)
        seeds = rng.integers(0, 2**31 - 1, size=n_tasks * episodes_per_task)
        generator_seed = int(rng.integers(0, 2**62))
        start = time.perf_counter()
        act_ref = self._ray.put(act_fn)
        put_seconds = time.perf_counter() - start
        bounds = np.linspace(0, n_tasks, min(self.num_workers, n_tasks) + 1).round().astype(int)
        shards = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        keys = tuple(info_keys)

        def submit(i: int) -> Any:
            a, b = shards[i]
            seeds_i = seeds[a * episodes_per_task:b * episodes_per_task]
            return self.workers[i].rollout.remote(act_ref, list(tasks[a:b]), episodes_per_task, seeds_i,
                                                  generator_seed, keys, Shard(a, n_tasks))

        pending = {submit(i): (i, time.monotonic()) for i in range(len(shards))}
        results: dict[int, Episodes] = {}
        worker_seconds: dict[int, float] = {}
        failures = [0] * len(shards)
        while pending:
            oldest = min(t for _, t in pending.values())
            wait = max(0.0, oldest + self.worker_timeout - time.monotonic())
            ready, _ = self._ray.wait(list(pending), num_returns=1, timeout=wait)
            if not ready:  # the oldest shard is past the timeout: its worker counts as dead
                ref = min(pending, key=lambda r: pending[r][1])
                i, _ = pending.pop(ref)
                self._fail(i, failures, shards, tasks, f"no answer within worker_timeout={self.worker_timeout:g} s "
                           f"(a hung worker, or a cluster without {self.num_workers} x {self.worker_cpus} free CPUs "
                           "for the workers)")
                pending[submit(i)] = (i, time.monotonic())
                continue
            ref = ready[0]
            i, _ = pending.pop(ref)
            try:
                status, value = self._ray.get(ref)
            except (self._ray.exceptions.RayActorError, self._ray.exceptions.WorkerCrashedError,
                    self._ray.exceptions.ObjectLostError) as exc:
                self._fail(i, failures, shards, tasks, f"its process died ({type(exc).__name__})")
                pending[submit(i)] = (i, time.monotonic())
                continue
            if status == "nonfinite":
                raise NonFiniteError(value)
            if status == "error":
                self._fail(i, failures, shards, tasks, value)
                pending[submit(i)] = (i, time.monotonic())
                continue
            results[i], worker_seconds[i] = value
        episodes = concat_episodes([results[i] for i in range(len(shards))])
        elapsed = time.perf_counter() - start
        self.last_fps = episodes.num_steps / elapsed if elapsed > 0 else float("nan")
        self.last_timing = {"seconds": elapsed, "put_seconds": put_seconds,
                            "slowest_worker_seconds": max(worker_seconds.values()),
                            "worker_seconds": sum(worker_seconds.values())}
        return episodes

    def _fail(self, i: int, failures: list[int], shards: list[tuple[int, int]], tasks: Sequence[Any],
              why: str) -> None:
        """Count a failure of shard ``i``, replace its worker, or stop the run after too many."""
        failures[i] += 1
        a, b = shards[i]
        if failures[i] > self.worker_retries:
            raise SamplerWorkerError(
                f"sampler worker {i} failed {failures[i]} times in a row on tasks {a}..{b - 1} of the meta-batch "
                f"(first: {tasks[a]!r}); the last checkpoint is intact. The worker's error:\n{why.rstrip()}")
        self._replace(i)

    def close(self) -> None:
        """Stop the workers (the Ray instance stays up for others in this process) and close the local envs."""
        for worker in self.workers:
            self._ray.kill(worker, no_restart=True)
        self.workers = []
        self.local.close()
