"""Goal definitions for DeepMind Control tasks: where goals come from and when one counts as reached.

A goal is a reachable physics state. Three *goal sources* draw it (chosen per env config):

- ``random_joints``: a uniformly random joint configuration, drawn the way the suite initialises
  episodes (reacher, point_mass: every such configuration is reachable);
- ``random_rollout``: the state after ``goal_steps`` uniformly random actions from the start
  (reachable by construction, for any domain);
- ``trajectory_offset``: the start is a state on a uniformly random trajectory of ``trajectory_length``
  env steps, drawn uniformly along it, and the goal the state ``goal_steps`` env steps later on the same
  trajectory (the Reacher protocol of stable-worldmodel, behind the LeWM, DINO-WM and PLDM baselines).

Two *success criteria* measure closeness on coordinates of the physics state:

- ``position``: the Euclidean distance between the task's position coordinates (reacher: fingertip x-y;
  point_mass: mass x-y; other domains: the selected joint positions) is within ``success_threshold``;
- ``qpos``: every selected joint position is within ``success_threshold`` of the goal's (hinge angles
  compared modulo 2 pi); the distance is the largest joint error.

A hinge whose body looks the same after 1/n of a turn (``joint_symmetry``: qpos index -> n; finger-spin's spinner,
two mirrored capsules with its tip marker hidden, n = 2) is compared modulo 2 pi / n: a goal image cannot say
more, so success asks for no more than the image shows. ``visual_symmetry`` measures n from rendered frames.

Velocities are free at the goal.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from dm_control.suite.utils import randomizers

from jepa_wm.errors import did_you_mean

# Tasks with hand-written position coordinates; any other `domain-task` of dm_control.suite measures
# success on its joint positions.
SPECIFIC_TASKS = ("reacher-easy", "reacher-hard", "point_mass-easy")
GOAL_SOURCES = ("random_joints", "random_rollout", "trajectory_offset")
SUCCESS_CRITERIA = ("position", "qpos")


def is_goal_dependent(observation_key: str) -> bool:
    """Observation entries that point at the task's target (reacher's ``to_target``, finger's
    ``target_position``, fish's ``target``...). The target marker is moved onto our goal, so these
    entries would show the goal in every observation: they are left out of state observations."""
    return "target" in observation_key


@dataclass(frozen=True)
class SuccessCriterion:
    """The coordinates success is measured on, and how far apart two of them are.

    ``geom``: x-y world position of that geom (needs forward kinematics); otherwise the joint positions
    ``joints`` (``None`` = all of qpos). ``metric`` is ``"euclidean"`` (the ``position`` criterion) or
    ``"max_joint"`` (the ``qpos`` criterion: the largest absolute joint error, hinges wrapped).
    ``symmetry``: ``(qpos index, n)`` pairs of hinges that look the same after 1/n of a turn (compared modulo
    2 pi / n).
    """

    threshold: float
    metric: str = "euclidean"
    geom: str | None = None
    joints: tuple[int, ...] | None = None
    symmetry: tuple[tuple[int, int], ...] = ()

    @property
    def name(self) -> str:
        return "qpos" if self.metric == "max_joint" else "position"

    def coordinates(self, physics) -> np.ndarray:
        """Success coordinates of a dm_control physics in its current state, (C,)."""
        if self.geom is not None:
            return np.array(physics.named.data.geom_xpos[self.geom][:2], dtype=np.float64)
        qpos = np.asarray(physics.data.qpos, dtype=np.float64)
        return qpos.copy() if self.joints is None else qpos[list(self.joints)]

    def coordinates_of_qpos(self, model: mujoco.MjModel, scratch: mujoco.MjData, qpos: np.ndarray) -> np.ndarray:
        """Success coordinates for a batch of joint positions ``qpos`` (N, nq) -> (N, C).

        Used by the simulator oracle on states from ``mujoco.rollout``. Geom positions need forward
        kinematics per state; MuJoCo offers no batched kinematics, so this loops over C-backed calls
        (about 10 us each), small next to the rollout itself.
        """
        if self.geom is None:
            return qpos.copy() if self.joints is None else qpos[:, list(self.joints)]
        geom_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, self.geom)
        positions = np.empty((len(qpos), 2))
        for i, q in enumerate(qpos):
            scratch.qpos[:] = q
            mujoco.mj_kinematics(model, scratch)
            positions[i] = scratch.geom_xpos[geom_id, :2]
        return positions

    def distance(self, coordinates: np.ndarray, goal: np.ndarray, periods: np.ndarray) -> np.ndarray:
        """Distance of coordinates (..., C) to the goal's (C,); ``periods`` (C,) is each angle's period (0: not an
        angle), see ``angle_periods``."""
        difference = np.asarray(coordinates, np.float64) - goal
        if self.metric == "euclidean":
            return np.linalg.norm(difference, axis=-1)
        return np.abs(wrap_angles(difference, periods)).max(axis=-1)

    def coordinate_names(self, model: mujoco.MjModel) -> list[str]:
        """(C,) names of the success coordinates: the geom's x and y, or each qpos entry's joint (``name[k]`` for the
        k-th entry of a joint that takes several)."""
        if self.geom is not None:
            return [f"{self.geom} x", f"{self.geom} y"]
        names = []
        for joint in range(model.njnt):
            width = (model.jnt_qposadr[joint + 1] if joint + 1 < model.njnt else model.nq) - model.jnt_qposadr[joint]
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint) or f"joint {joint}"
            names += [name] if width == 1 else [f"{name}[{k}]" for k in range(width)]
        return names if self.joints is None else [names[index] for index in self.joints]

    def angle_periods(self, model: mujoco.MjModel) -> np.ndarray:
        """(C,) the period each success coordinate is compared modulo: 2 pi for a hinge, 2 pi / n for a hinge that
        looks the same after 1/n of a turn (``symmetry``), 0 for a coordinate that is not an angle."""
        if self.geom is not None:
            return np.zeros(2)
        periods = np.zeros(model.nq)
        periods[hinge_qpos(model)] = 2 * np.pi
        for index, order in self.symmetry:
            if not (0 <= index < model.nq and periods[index]):
                raise ValueError(f"joint_symmetry names qpos {index}, which is not a hinge (see jepa-wm joints)")
            periods[index] = 2 * np.pi / order
        return periods if self.joints is None else periods[list(self.joints)]


def hinge_qpos(model: mujoco.MjModel) -> list[int]:
    """The qpos index of every hinge joint of a model."""
    return [int(model.jnt_qposadr[j]) for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]


def wrap_angles(difference: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """Differences (..., C) with each angle (``periods`` (C,) > 0) wrapped into [-period / 2, period / 2)."""
    periods = np.asarray(periods, np.float64)
    span = np.where(periods > 0, periods, 1.0)
    return np.where(periods > 0, (difference + span / 2) % span - span / 2, difference)


@dataclass(frozen=True)
class GoalTask:
    """How goals are drawn for one task (``source``, see the module docstring) and when they are met."""

    success: SuccessCriterion
    source: str
    marker_geom: str | None = None  # a geom moved onto the goal, drawn in videos only...
    marker_follows: str | None = None  # ...at the goal position of this geom (fingertip, mass)


# The task's own thresholds: reacher's is its target radius (read from the model: 0.05 easy, 0.015 hard).
POINT_MASS_RADIUS = 0.03


def goal_task_for(domain: str, task: str, goal_source: str | None = None, success: str = "position",
                  success_threshold: float | None = None, success_joints=None, marker_radius=None,
                  joint_symmetry=None) -> GoalTask:
    """The goal definition of ``domain-task``; ``None`` settings take the task's own."""
    name = f"{domain}-{task}"
    if goal_source is not None and goal_source not in GOAL_SOURCES:
        raise ValueError(f"unknown goal_source '{goal_source}'{did_you_mean(goal_source, GOAL_SOURCES)} "
                         f"(choices: {', '.join(GOAL_SOURCES)})")
    if success not in SUCCESS_CRITERIA:
        raise ValueError(f"unknown success criterion '{success}'{did_you_mean(success, SUCCESS_CRITERIA)} "
                         f"(choices: {', '.join(SUCCESS_CRITERIA)})")
    joints = None if success_joints is None else tuple(int(i) for i in success_joints)
    symmetry = symmetry_pairs(joint_symmetry)
    geom, default_source, default_threshold = None, "random_rollout", None
    if domain == "reacher":
        geom, default_source, default_threshold = "finger", "random_joints", marker_radius
    elif name == "point_mass-easy":
        geom, default_source, default_threshold = "pointmass", "random_joints", POINT_MASS_RADIUS
    threshold = default_threshold if success_threshold is None else float(success_threshold)
    if threshold is None:
        raise ValueError(
            f"task '{name}' has no built-in success threshold; set env.success_threshold (for "
            f"success=position a distance on its joint positions, for success=qpos a per-joint tolerance, "
            f"e.g. 0.1) (tasks with a built-in one: {', '.join(SPECIFIC_TASKS)})"
        )
    if success == "qpos":
        criterion = SuccessCriterion(threshold, "max_joint", joints=joints, symmetry=symmetry)
    else:
        criterion = SuccessCriterion(threshold, "euclidean", geom=geom, joints=None if geom else joints,
                                     symmetry=() if geom else symmetry)
    marker = "target" if geom is not None else None
    return GoalTask(criterion, goal_source or default_source, marker, geom)


def symmetry_pairs(joint_symmetry) -> tuple[tuple[int, int], ...]:
    """``joint_symmetry`` of an env config (qpos index -> n, or None) as sorted ``(index, n)`` pairs, checked."""
    pairs = []
    for index, order in dict(joint_symmetry or {}).items():
        if not (str(index).isdigit() and isinstance(order, int) and not isinstance(order, bool) and order >= 1):
            raise ValueError(f"joint_symmetry maps a qpos index to how many times its body looks the same in a "
                             f"turn (an integer >= 1), e.g. {{2: 2}}; got {index!r}: {order!r}")
        pairs.append((int(index), order))
    return tuple(sorted(pairs))


# What a world model trained on one env config needs of another to plan in it: the same physics,
# actions and camera. Evaluation settings (goals, success criterion, budget) may differ freely.
DYNAMICS_KEYS = ("domain", "task", "action_repeat", "camera_id", "image_size")
# Keys of an env config about planning in the task (what cost.name=auto means there), not about the env or its data:
# datasets do not record them, and a checkpoint plans with its task's current choice unless given one.
PLANNING_KEYS = ("planning_cost",)
# Suite tasks with the same physics and observations (with the marker hidden): reacher's differ only
# in the target's size, which our goals and hidden markers make irrelevant.
SAME_DYNAMICS = {("reacher", "hard"): ("reacher", "easy")}


def dynamics_differences(trained: dict, requested: dict) -> list[str]:
    """``["key: trained X, requested Y", ...]`` for every dynamics setting of two env configs that differs."""
    def canonical(cfg: dict) -> dict:
        settings = {key: cfg.get(key) for key in DYNAMICS_KEYS}
        settings["domain"], settings["task"] = SAME_DYNAMICS.get((settings["domain"], settings["task"]),
                                                                 (settings["domain"], settings["task"]))
        return settings

    before, after = canonical(trained), canonical(requested)
    return [f"{key}: {trained.get(key)!r} vs {requested.get(key)!r}" for key in DYNAMICS_KEYS if before[key] != after[key]]


def check_suite_task(domain: str, task: str) -> None:
    """Fail early, naming the nearest valid task, when ``domain-task`` is not in dm_control.suite."""
    from dm_control import suite

    valid = [f"{d}-{t}" for d, t in suite.ALL_TASKS]
    name = f"{domain}-{task}"
    if name not in valid:
        raise ValueError(f"unknown dm_control task '{name}'{did_you_mean(name, valid)} (see dm_control.suite.ALL_TASKS)")


def randomize_joints(physics, random: np.random.RandomState) -> None:
    """A uniformly random joint configuration, the same way the suite's tasks initialise episodes."""
    with physics.reset_context():
        randomizers.randomize_limited_and_rotational_joints(physics, random)


JOINT_TYPES = {int(mujoco.mjtJoint.mjJNT_FREE): "free", int(mujoco.mjtJoint.mjJNT_BALL): "ball",
               int(mujoco.mjtJoint.mjJNT_SLIDE): "slide", int(mujoco.mjtJoint.mjJNT_HINGE): "hinge"}


def domain_task(domain: str, task: str | None = None) -> str:
    """``task``, or the domain's first task when None; checked (nearest names in the error)."""
    from dm_control import suite

    tasks = [t for d, t in suite.ALL_TASKS if d == domain]
    if not tasks:
        domains = sorted({d for d, _ in suite.ALL_TASKS})
        raise ValueError(f"unknown dm_control domain '{domain}'{did_you_mean(domain, domains)} "
                         f"(choices: {', '.join(domains)})")
    check_suite_task(domain, task or tasks[0])
    return task or tasks[0]


def domain_joints(domain: str, task: str | None = None) -> list[dict]:
    """Every joint of a dm_control.suite domain: name, type, first qpos index and range (what ``success_joints``
    indexes). A free joint takes 7 qpos entries, a ball 4, hinges and slides 1."""
    from dm_control import suite

    model = suite.load(domain, domain_task(domain, task)).physics.model
    rows = []
    for joint in range(model.njnt):
        kind = JOINT_TYPES[int(model.jnt_type[joint])]
        limited = bool(model.jnt_limited[joint])
        rows.append({"qpos": int(model.jnt_qposadr[joint]), "name": model.id2name(joint, "joint"), "type": kind,
                     "range": [round(float(x), 3) for x in model.jnt_range[joint]] if limited else "unlimited"})
    return rows


# Turns tried by ``visual_symmetry``: a body that looks the same after 1/n of a turn, for these n.
TURN_ORDERS = (6, 4, 3, 2)
GENERIC_TURN = 0.5  # rad: no symmetry of TURN_ORDERS; how much of the frame a hinge's body covers
CHANGED_LEVEL = 24  # a pixel changed when a channel moved by more than this (of 255)


def visual_symmetry(domain: str, task: str, camera_id: int = 0, image_size: int = 64, poses: int = 3) -> dict[int, int]:
    """``qpos index -> n`` for every hinge of ``domain-task``, measured on rendered frames: n > 1 when turning the
    hinge by 1/n of a turn leaves the frame as it was (at most 1% of the pixels a 0.5 rad turn changes,
    at ``poses`` random poses), 1 when no such turn does, 0 when the hinge's body is not in view at all.

    What a goal image can show of a joint: a success criterion asking more (finger-spin's spinner, whose tip
    marker the task hides, within 0.15 rad modulo 2 pi) asks for what no pixel world model can see.
    """
    from dm_control import suite

    check_suite_task(domain, task)
    env = suite.load(domain, task, task_kwargs={"random": np.random.RandomState(0)})
    physics, model = env.physics, env.physics.model

    def changed(frame: np.ndarray, index: int, turn: float) -> float:
        """The fraction of pixels that change when hinge qpos ``index`` turns by ``turn``."""
        saved = physics.data.qpos.copy()
        with physics.reset_context():
            physics.data.qpos[index] += turn
        turned = physics.render(image_size, image_size, camera_id=camera_id)
        with physics.reset_context():
            physics.data.qpos[:] = saved
        return float((np.abs(turned.astype(int) - frame.astype(int)).max(-1) > CHANGED_LEVEL).mean())

    hinges = hinge_qpos(model)
    fractions = {index: {turn: [] for turn in (GENERIC_TURN, *TURN_ORDERS)} for index in hinges}
    for _ in range(poses):
        env.reset()  # the task's own random pose (and its look: finger-spin hides the spinner's tip here)
        with physics.reset_context():  # the reference frame drawn as the turned ones are (after forward kinematics)
            pass
        frame = physics.render(image_size, image_size, camera_id=camera_id)
        for index in hinges:
            fractions[index][GENERIC_TURN].append(changed(frame, index, GENERIC_TURN))
            for order in TURN_ORDERS:
                fractions[index][order].append(changed(frame, index, 2 * np.pi / order))
    orders = {}
    for index, by_turn in fractions.items():
        generic = by_turn[GENERIC_TURN]
        if max(generic) == 0:
            orders[index] = 0
            continue
        same = [order for order in TURN_ORDERS
                if all(turned <= 0.01 * moved for turned, moved in zip(by_turn[order], generic))]
        orders[index] = same[0] if same else 1
    return orders
