"""Goal-reaching evaluation: the same seeded episodes for every method, a report, a video and a plot.

Methods: ``ours`` (MPC on a world model), ``random`` (the floor) and ``oracle`` (the same planner
with the true simulator as the model and the true distance as the cost: the ceiling for this
planner budget).
"""

from __future__ import annotations

import io
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jepa_wm.files import write_bytes_atomic, write_json_atomic
from jepa_wm.seeds import evaluation_seed


@dataclass
class EpisodeRecord:
    success: bool  # the goal was reached at some step within the budget
    success_at_end: bool  # the goal is met when the episode ends
    final_distance: float
    steps: int
    distances: list[float]
    planning_seconds: list[float]
    frames: list[np.ndarray] = field(default_factory=list)  # observation beside goal, when recorded
    variation: dict = field(default_factory=dict)  # the scene's changes drawn for this episode (env.variation)
    solved_at_start: bool = False  # the start already met the goal (goal sources without rejection, as published)
    off_goal: list[str] = field(default_factory=list)  # success joints beyond the tolerance when the episode ended
    goal_moves: list[str] = field(default_factory=list)  # success joints the goal asks to move (off at the start)


def run_episode(env, controller, seed: int, record: bool = False, frame_size: int = 128) -> EpisodeRecord:
    """One goal-reaching episode of the env's budget.

    The goal counts as reached when a step ends on it (or passes it within an action repeat), so at
    least one step is taken; with ``terminate_on_success`` the episode ends there, otherwise it runs the
    whole budget and ``success_at_end`` tells whether the controller stayed on the goal.
    """
    obs, reset_info = env.reset(seed=seed)
    solved_at_start, moves = env.is_success(), env.coordinates_off_goal()
    controller.reset(seed)
    goal_frame = env.goal_frame(frame_size) if record else None

    def observation_beside_goal() -> np.ndarray:
        return np.concatenate([env.render(frame_size, show_goal_marker=True), goal_frame], axis=1)

    frames = [observation_beside_goal()] if record else []
    distances = [env.distance_to_goal()]
    reached, steps, done = False, 0, False
    while not done:
        obs, _, terminated, truncated, info = env.step(controller.act(env, obs))
        steps += 1
        distances.append(info["distance"])
        reached = reached or info["success"]
        if record:
            frames.append(observation_beside_goal())
        done = terminated or truncated
    return EpisodeRecord(reached, env.is_success(), distances[-1], steps, distances,
                         list(controller.planning_seconds), frames, dict(reset_info.get("variation") or {}),
                         solved_at_start, env.coordinates_off_goal(), moves)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a success rate: honest at 0% and 100%, unlike the normal one."""
    if trials == 0:
        return (0.0, 1.0)
    rate = successes / trials
    denominator = 1 + z**2 / trials
    centre = (rate + z**2 / (2 * trials)) / denominator
    half_width = z * math.sqrt(rate * (1 - rate) / trials + z**2 / (4 * trials**2)) / denominator
    # At 0% and 100% the bound meets the rate; rounding can put it a hair past it (1 - 1e-16 at 6 of 6), which an
    # error bar reads as negative: the interval always contains its rate.
    return (max(0.0, min(rate, centre - half_width)), min(1.0, max(rate, centre + half_width)))


def summarize(records: list[EpisodeRecord], env_name: str, method: str, planner: str | None, seed: int,
              split: str = "dev") -> dict:
    """One row of the report (the JSON schema of ``results``).

    ``success_rate`` counts goals reached at any step, ``success_at_end_rate`` goals held when the
    episode ended (the same when episodes terminate on success); each has its 95% Wilson interval.
    """
    successes = sum(record.success for record in records)
    at_end = sum(record.success_at_end for record in records)
    planning = [s for record in records for s in record.planning_seconds]
    varied = {"variation": [record.variation for record in records]} if any(r.variation for r in records) else {}
    failed = [record for record in records if not record.success]
    # Where the failures fell short (qpos criterion): per success joint, how many failed episodes ended beyond its
    # tolerance there. A task whose failures all leave one joint off says which part of the picture a model misses.
    off = {"off_at_failure": dict(Counter(name for record in failed for name in record.off_goal))} if any(
        record.off_goal for record in failed) else {}
    # Success where the goal asks a joint to move and where it keeps it (joints some goals move and others keep):
    # finger-spin's spinner, which only contact turns, is planned far less often where its goal turns it.
    by_move = success_by_goal_move([int(record.success) for record in records], [r.goal_moves for r in records])
    return {
        "env": env_name,
        "method": method,
        "planner": planner,
        "success_rate": successes / len(records),
        "ci95": list(wilson_interval(successes, len(records))),
        "success_at_end_rate": at_end / len(records),
        "ci95_at_end": list(wilson_interval(at_end, len(records))),
        "final_distance": float(np.mean([record.final_distance for record in records])),
        "ms_per_step": float(np.mean(planning) * 1000) if planning else 0.0,
        "episodes": len(records),
        "reached": [int(record.success) for record in records],  # per episode: totals compared episode by episode
        # Episodes whose start already met the goal: a success there asks nothing of the controller (random reaches
        # them too). Reported, never dropped, so that the rate stays comparable with the published protocol's.
        "solved_at_start": sum(record.solved_at_start for record in records),
        "seed": seed,
        "split": split,
        "failures": len(failed),
        **off,
        **({"by_goal_move": by_move} if by_move else {}),
        **varied,  # per episode, what env.variation drew (only when the scene varies)
    }


def evaluate(env, controllers: dict, episodes: int, seed: int, record_episodes: int = 0,
             progress: bool = True, split: str = "dev") -> dict[str, list[EpisodeRecord]]:
    """Run every controller on the same ``episodes`` seeded episodes of ``split``; records per method."""
    records: dict[str, list[EpisodeRecord]] = {method: [] for method in controllers}
    bar = tqdm(total=episodes, unit="episode", desc=f"{env.name}, {split} episodes ({', '.join(controllers)})",
               disable=not progress)
    for episode in range(episodes):
        episode_seed_value = evaluation_seed(seed, episode, split)
        for method, controller in controllers.items():
            record = run_episode(env, controller, episode_seed_value, record=episode < record_episodes)
            records[method].append(record)
        bar.update(1)  # an episode is done when every method has run it
        bar.set_postfix({m: f"{np.mean([r.success for r in rs]):.0%}" for m, rs in records.items() if rs})
    bar.close()
    return records


def goal_moves(env, episodes: int, seed: int, split: str = "dev") -> list[list[str]]:
    """Per evaluation episode, the success joints its goal asks to move: those the start holds farther from the
    goal than the tolerance (qpos tasks; none for a position criterion). The episodes ``evaluate`` plans, drawn
    again from their seeds without planning, so that a report written earlier can be split by what its goals ask."""
    moves = []
    for episode in range(episodes):
        env.reset(seed=evaluation_seed(seed, episode, split))
        moves.append(env.coordinates_off_goal())
    return moves


def success_by_goal_move(reached: list[int], moves: list[list[str]]) -> dict[str, dict[str, list[int]]]:
    """Per success joint that some goals move and others keep: ``{"moved": [reached, episodes], "kept": [...]}``.
    A success rate far lower where the goal moves a joint says which motion a model cannot plan (finger-spin's
    spinner, which only contact turns)."""
    if len(reached) != len(moves):
        raise ValueError(f"{len(reached)} episodes reached or not, but {len(moves)} goals")
    split = {}
    for joint in sorted({name for names in moves for name in names}):
        moved = [success for success, names in zip(reached, moves) if joint in names]
        kept = [success for success, names in zip(reached, moves) if joint not in names]
        if moved and kept:
            split[joint] = {"moved": [int(sum(moved)), len(moved)], "kept": [int(sum(kept)), len(kept)]}
    return split


def distance_unit(metric: str) -> str:
    """How a success criterion's distance reads: meters for positions, radians for the largest joint error."""
    return "rad, largest joint error" if metric == "max_joint" else "m"


def format_table(rows: list[dict], unit: str | None = None) -> str:
    """The printed success table, under a line naming the episodes (task, split, count, plan seed) and unit."""
    first = rows[0]
    title = (f"{first['env']}: {first['episodes']} {first['split']} episodes (plan seed {first['seed']}); "
             f"success = goal reached at any step (95% Wilson interval); final distance"
             f"{f' in {unit}' if unit else ''}")
    header = (f"{'env':<18} {'method':<8} {'planner':<9} {'reached':>8} {'95% CI':>12} {'at end':>7} "
              f"{'final dist':>10} {'ms/step':>8} {'episodes':>8}")
    lines = [title, header, "-" * len(header)]
    for row in rows:
        low, high = row["ci95"]
        lines.append(
            f"{row['env']:<18} {row['method']:<8} {str(row['planner'] or '-'):<9} {row['success_rate']:>8.0%} "
            f"{f'[{low:.0%}, {high:.0%}]':>12} {row['success_at_end_rate']:>7.0%} {row['final_distance']:>10.3f} "
            f"{row['ms_per_step']:>8.1f} {row['episodes']:>8}"
        )
    return "\n".join(lines)


# GIF frames are scaled up (nearest neighbour) to at least this width, so that their words can be read.
READABLE_WIDTH = 384


def labelled(frame: np.ndarray, text: str, reached: bool, panes: tuple[str, ...] = ("observation", "goal")) -> np.ndarray:
    """A frame (panes side by side, e.g. the observation and the goal) scaled up to be read, under a header: what
    it shows (``text``, `` | `` starting a new line where it does not fit) and a bar that turns green once the goal
    is reached (red before), with each pane's name above it."""
    from PIL import Image, ImageDraw

    scale = max(1, -(-READABLE_WIDTH // frame.shape[1]))
    width, height = frame.shape[1] * scale, frame.shape[0] * scale
    words, lines = text.split(" | "), [""]
    for word in words:  # about 6 pixels per character in PIL's default font
        candidate = f"{lines[-1]} | {word}" if lines[-1] else word
        lines[-1:] = [candidate] if len(candidate) * 6 <= width - 6 else [lines[-1], word]
    header = 12 * len(lines) + 2
    image = Image.new("RGB", (width, height + header + 3 + 12), (0, 0, 0))
    image.paste(Image.fromarray(frame).resize((width, height), Image.NEAREST), (0, header + 3 + 12))
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((3, 1 + 12 * row), line, fill=(255, 255, 255))
    draw.rectangle([0, header, width, header + 2], fill=(40, 200, 60) if reached else (200, 50, 40))
    for index, name in enumerate(panes):
        draw.text((3 + index * width // len(panes), header + 4), name, fill=(200, 200, 200))
    return np.asarray(image)


def save_video(records: dict[str, list[EpisodeRecord]], path: Path, success_threshold: float | None = None,
               fps: int = 10) -> Path | None:
    """GIF of the recorded episodes, method after method. Each frame shows the observation (left, the goal's
    marker drawn) beside the goal (right), each pane named, scaled up to be read, under lines naming the
    method, episode, step and distance, and a bar that turns green when the goal has been reached."""
    import imageio.v2 as imageio

    frames = []
    for method, method_records in records.items():
        for episode, record in enumerate(method_records):
            reached = False
            for step, frame in enumerate(record.frames):
                distance = record.distances[min(step, len(record.distances) - 1)]
                reached = reached or (success_threshold is not None and distance <= success_threshold)
                frames.append(labelled(frame, f"{method} | episode {episode} | step {step} | distance {distance:.3f}"
                                              f"{' | reached' if reached else ''}", reached))
    if not frames:
        return None
    # Encoded in memory, then written atomically: an encoder that fails on a full disk would try again from its
    # destructor (an 'Exception ignored' traceback after the error line).
    write_bytes_atomic(path, imageio.mimwrite("<bytes>", frames, format="GIF", duration=1000 / fps, loop=0))
    return path


def curve_label(method: str, length: int, budget: int) -> str:
    """A distance curve's legend entry, saying why it ends before the others (every episode reached the goal)."""
    return method + (f" (every episode reached the goal by step {length - 1})" if length < budget else "")


def save_plot(rows: list[dict], records: dict[str, list[EpisodeRecord]], success_threshold: float, path: Path,
              unit: str = "") -> Path:
    """Success rate with 95% intervals, and distance to goal over the episode, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, curves) = plt.subplots(1, 2, figsize=(11, 4))
    methods = [row["method"] for row in rows]
    rates = np.array([row["success_rate"] for row in rows])
    errors = np.array([[rate - row["ci95"][0], row["ci95"][1] - rate] for rate, row in zip(rates, rows)]).T
    bars.bar(methods, rates, yerr=errors, capsize=6, color=["C0", "C1", "C2", "C3"][: len(methods)])
    bars.set_ylim(0, 1)
    bars.set_ylabel("success rate (95% CI)")
    bars.set_title(f"{rows[0]['env']}: {rows[0]['episodes']} {rows[0]['split']} episodes (plan seed {rows[0]['seed']})")
    budget = max(len(record.distances) for method_records in records.values() for record in method_records)
    for method, method_records in records.items():
        length = max(len(record.distances) for record in method_records)
        # Episodes that ended early (success) keep their last distance.
        padded = np.array([record.distances + [record.distances[-1]] * (length - len(record.distances))
                           for record in method_records])
        curves.plot(padded.mean(axis=0), label=curve_label(method, length, budget))
    curves.axhline(success_threshold, color="k", linestyle="--", linewidth=1, label="success threshold")
    curves.set_xlabel("env step (an episode that reaches the goal ends there; its last distance is carried on)",
                      fontsize=8)
    curves.set_ylabel(f"mean distance to goal{f' ({unit})' if unit else ''}")
    curves.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)  # beside, not over
    figure.tight_layout()
    encoded = io.BytesIO()
    figure.savefig(encoded, dpi=100, format="png")
    plt.close(figure)
    write_bytes_atomic(path, encoded.getvalue())
    return path


def write_report(path: Path, rows: list[dict], config: dict, cost: str | None = None, **about) -> Path:
    """The JSON report: ``{"results": [row, ...], "config": {...}, "cost": "what ours planned with", **about}``
    (``about``: e.g. the distance unit and the checkpoint's sha256), atomically."""
    write_json_atomic(path, {"results": rows, "config": config, **({"cost": cost} if cost else {}), **about})
    return path


def most_split_joint(split: dict[str, dict[str, list[int]]]) -> str:
    """The joint of ``success_by_goal_move``'s split whose goals that keep it are reached most above those that
    move it: what a report names when it names one."""
    def rate(counts):
        return counts[0] / counts[1]

    return max(split, key=lambda name: rate(split[name]["kept"]) - rate(split[name]["moved"]))
