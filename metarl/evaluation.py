"""Evaluate and watch a trained meta-policy: ``metarl.evaluate`` and ``metarl evaluate``.

    metarl evaluate runs/nav                               # the run's meta-test table, recomputed
    metarl evaluate runs/nav --tasks 100 --seed 7          # other held-out tasks
    metarl evaluate runs/cheetah --env metarl/HalfCheetahDir-v0    # a family with the same spaces
    metarl evaluate runs/cheetah --video cheetah.mp4       # episodes before and after adaptation

:func:`evaluate` is the algorithm's own meta-test (the one ``metarl train`` ends with) on the family,
task count and seed asked for, so its numbers equal ``metatest.json`` when nothing is changed.

``--video`` takes the first meta-test task and renders an episode of the policy before adaptation, then
one after (:func:`metarl.policy.MetaPolicy.adapt` on the run's episode count): MuJoCo families through
``render_mode="rgb_array"`` (headless) into an ``.mp4`` (the ``metarl[video]`` extra) or a ``.gif``;
the 2-D families (Navigation2D, SparsePointRobot) draw both trajectories and the goal as a PNG.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metarl.config import CommandParser
from metarl.protocols import PROTOCOLS, MetaWorldProtocol, format_protocol, metaworld_evaluation

__all__ = ["evaluate", "evaluate_main", "render_adaptation", "check_picturable"]


def _load(run_dir: str | os.PathLike, best: bool) -> Any:
    from metarl.policy import load_policy

    return load_policy(run_dir, best=best)


def evaluate(run_dir: str | os.PathLike, env_id: str | None = None, *, n_tasks: int | None = None,
             seed: int | None = None, env_kwargs: Mapping[str, Any] | None = None, best: bool = False
             ) -> dict[str, Any]:
    """The meta-test table of a trained meta-RL run (``metatest.json``'s layout).

    Args:
        run_dir: a ``metarl train`` run directory.
        env_id: the family to test on (default: the run's); another family needs the same spaces.
        n_tasks: held-out tasks (default: the run's ``metatest_tasks``).
        seed: seed of the tasks and episodes (default: the run's ``metatest_seed``).
        env_kwargs: the family's constructor kwargs (default: the run's when the family is the run's).
        best: evaluate the run's ``best.pt`` (runs trained with ``--eval-every``).

    Raises:
        CheckpointError / ValueError: an unreadable run, a family with other spaces, a setting out of range.
    """
    policy = _load(run_dir, best)
    _retarget(policy.algorithm, env_id, n_tasks, seed, env_kwargs)
    return policy.algorithm.meta_test()


def _retarget(algorithm: Any, env_id: str | None, n_tasks: int | None, seed: int | None,
              env_kwargs: Mapping[str, Any] | None) -> None:
    cfg = algorithm.cfg
    settings: dict[str, Any] = {}
    if n_tasks is not None:
        settings["metatest_tasks"] = n_tasks
    if seed is not None:
        settings["metatest_seed"] = seed
    same_env = env_id is None or env_id == cfg.env
    kwargs = dict(cfg.env_kwargs) if same_env and env_kwargs is None else dict(env_kwargs or {})
    algorithm.retarget(cfg.env if env_id is None else env_id, kwargs, **settings)


def render_adaptation(policy: Any, out: str | os.PathLike, *, seed: int = 0, episodes: int | None = None
                      ) -> Path:
    """Picture the policy on the first meta-test task before and after adapting to it; returns the file written.

    MuJoCo families (``render_mode="rgb_array"``): a video, before then after (``.mp4`` needs the
    ``metarl[video]`` extra; ``.gif`` needs nothing). Families on the plane with a ``goal_of(task)``: a PNG of
    both trajectories and the goal (a ``.mp4``/``.gif`` name becomes ``.png``). A family of your own is pictured
    the second way when its observation is a 2-D position and its env defines ``goal_of(task) -> (x, y)``
    (and optionally ``goal_radius``), as ``metarl/Navigation2D-v0`` and the point robots do.

    Raises:
        ValueError: a family with neither an ``rgb_array`` renderer nor a goal on the plane.
    """
    algo = policy.algorithm
    cfg = algo.cfg
    task = algo.sampler.sample_tasks(1, np.random.default_rng(cfg.metatest_seed), split="test")[0]
    out = Path(out)
    env, renders, goal_of, goal_radius = _picture_env(cfg, out)
    try:
        env.unwrapped.set_task(task)
        try:
            before = policy.adapt(env, episodes=0, seed=seed).run_episode(env, seed=seed, render=renders)
        except Exception as exc:  # MuJoCo's FatalError and GL errors carry no common base
            if renders and "GL" in f"{type(exc).__name__} {exc}":
                raise ValueError(f"cannot render headless ({str(exc).splitlines()[0][:120]}): set MUJOCO_GL=egl or "
                                 "MUJOCO_GL=osmesa, with that library installed") from exc
            raise
        after_policy = policy.adapt(env, episodes=episodes, seed=seed)
        after = after_policy.run_episode(env, seed=seed, render=renders)
    finally:
        env.close()
    if renders:
        return _write_video(out, before.frames, after.frames)
    return _plot_trajectories(out.with_suffix(".png"), before, after, goal_of(task), goal_radius,
                              f"{cfg.env} {task}")


def check_picturable(cfg: Any, out: str | os.PathLike) -> None:
    """Refuse, before any meta-test, a ``--video`` of a family that cannot be pictured or a file name this
    install cannot write (one line each)."""
    env = _picture_env(cfg, Path(out))[0]
    env.close()


def _picture_env(cfg: Any, out: Path) -> tuple[Any, bool, Any, float | None]:
    """``(env, renders, goal_of, goal_radius)``: the run's family made for picturing (``rgb_array`` frames, or a
    goal on the plane), after checking that it can be pictured into ``out``."""
    from metarl.tasks import make_env

    make_kwargs = dict(cfg.env_kwargs)
    if cfg.max_episode_steps is not None:
        make_kwargs["max_episode_steps"] = cfg.max_episode_steps
    probe = make_env(cfg.env, **make_kwargs)
    base = probe.unwrapped
    renders = "rgb_array" in (base.metadata or {}).get("render_modes", [])
    goal_of, goal_radius = getattr(base, "goal_of", None), getattr(base, "goal_radius", None)
    on_plane = base.observation_space.shape == (2,)
    probe.close()
    if not renders and not (goal_of is not None and on_plane):
        raise ValueError(f"{cfg.env} has no rgb_array renderer and no goal_of(task) on a 2-D plane, so there is "
                         "nothing to picture: leave --video out")
    if renders:
        _check_video_file(out)
        if not os.environ.get("DISPLAY"):
            os.environ.setdefault("MUJOCO_GL", "egl")  # headless: MuJoCo's EGL backend, no X server needed
        return make_env(cfg.env, render_mode="rgb_array", **make_kwargs), True, goal_of, goal_radius
    return make_env(cfg.env, **make_kwargs), False, goal_of, goal_radius


def _check_video_file(out: Path) -> None:
    """Refuse, before any rendering, a video name this install cannot write."""
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"--video {out}: name a .mp4 or a .gif file")
    if out.suffix.lower() == ".mp4":
        try:
            import imageio.v2  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError as exc:
            raise ValueError("writing .mp4 needs the video extra: pip install 'metarl[video]' (or name a .gif)") from exc


def _write_video(out: Path, before: Sequence[np.ndarray], after: Sequence[np.ndarray]) -> Path:
    from PIL import Image, ImageDraw

    def caption(frames: Sequence[np.ndarray], text: str) -> list[np.ndarray]:
        out_frames = []
        for frame in frames:
            image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
            ImageDraw.Draw(image).text((8, 8), text, fill=(255, 255, 255))
            out_frames.append(np.asarray(image))
        return out_frames

    frames = caption(before, "before adaptation") + caption(after, "after adaptation")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        images = [Image.fromarray(f) for f in frames[::2]]
        images[0].save(out, save_all=True, append_images=images[1:], duration=40, loop=0)
        return out
    import imageio.v2 as imageio

    with imageio.get_writer(out, fps=30, codec="libx264", macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame)
    return out


def _plot_trajectories(out: Path, before: Any, after: Any, goal: np.ndarray, goal_radius: float | None,
                       title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for record, label, colour in ((before, "before adaptation", "tab:grey"), (after, "after adaptation", "tab:blue")):
        path = np.vstack([record.observations, record.final_observation[None]])
        ax.plot(path[:, 0], path[:, 1], "-o", ms=2, color=colour,
                label=f"{label} (return {record.episode_return:.1f})")
    ax.plot(*goal, "r*", ms=14, label="goal")
    if goal_radius:
        ax.add_patch(plt.Circle(tuple(goal), goal_radius, color="r", fill=False, ls="--"))
    ax.plot(0, 0, "ks", ms=5)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="best")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def evaluate_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``metarl evaluate DIR [--env ID] [--tasks N] [--seed S] [--protocol metaworld] [--video FILE]``: print the
    meta-test table (with the run's thread count unless ``--threads`` says otherwise)."""
    from metarl.launcher import parse_env_kwargs

    parser = CommandParser(prog="metarl evaluate",
                                     description="meta-test a trained meta-RL run (and picture it)")
    parser.add_argument("run_dir", type=Path, metavar="DIR", help="a metarl train run directory")
    parser.add_argument("--env", default=None, help="family to test on (default: the run's; same spaces needed)")
    parser.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE", help="the family's kwargs")
    parser.add_argument("--tasks", type=int, default=None, metavar="N", help="held-out tasks (default: the run's)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the tasks and episodes (default: the run's)")
    parser.add_argument("--best", action="store_true", help="evaluate best.pt (runs with --eval-every)")
    parser.add_argument("--video", type=Path, default=None, metavar="FILE",
                        help="also picture the first task before and after adaptation (.mp4, .gif; .png on the plane)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="own",
                        help="the algorithm's own meta-test, or Meta-World's evaluation protocol (every test task, or "
                             "--tasks of each class; metarl.protocols)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads (default: the run's own; 1 degrades gracefully on a shared machine)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the table as JSON")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        raise ValueError(f"{args.run_dir} is not a directory: give a metarl train run directory")
    if args.tasks is not None and args.tasks < 1:
        raise ValueError(f"--tasks must be at least 1, got {args.tasks}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    policy = _load(args.run_dir, args.best)
    import torch

    torch.set_num_threads(args.threads or getattr(policy.algorithm.cfg, "threads", 1))
    env_kwargs = parse_env_kwargs(args.env_kwargs) if args.env_kwargs is not None else None
    _retarget(policy.algorithm, args.env, args.tasks, args.seed, env_kwargs)
    if args.video is not None:  # refused before the meta-test, not after it
        check_picturable(policy.algorithm.cfg, args.video)
    if args.protocol == "own":
        result = policy.algorithm.meta_test()
        print(policy.algorithm.format_metatest(result))
    else:
        cfg = policy.algorithm.cfg
        result = metaworld_evaluation(policy, protocol=MetaWorldProtocol(tasks_per_class=args.tasks),
                                      seed=cfg.metatest_seed if args.seed is None else args.seed)
        print(format_protocol(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    if args.video is not None:
        written = render_adaptation(policy, args.video, seed=policy.algorithm.cfg.metatest_seed)
        print(f"wrote {written}", file=sys.stderr)
    return result
