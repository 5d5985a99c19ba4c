"""Goal definitions for DeepMind Control tasks: how a goal is drawn and how closeness to it is measured.

A goal is a reachable physics state. Success is measured on a few *position coordinates* (the
reacher's fingertip, the point mass's x-y), because that is what "reaching" means for these tasks;
velocities are free at the goal.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import mujoco
import numpy as np
from dm_control.suite.utils import randomizers

# Tasks with a hand-written success criterion; any other `domain-task` of dm_control.suite uses the
# generic mechanism (goal = state reached by a random rollout, distance on joint positions).
SPECIFIC_TASKS = ("reacher-easy", "reacher-hard", "point_mass-easy")


@dataclass(frozen=True)
class PositionSpec:
    """Which coordinates the success criterion is measured on.

    ``kind="geom"``: the x-y world position of geom ``name`` (needs forward kinematics).
    ``kind="qpos"``: entries ``indices`` of the joint position vector (``None`` = all of them).
    """

    kind: str
    name: str | None = None
    indices: tuple[int, ...] | None = None

    def of_physics(self, physics) -> np.ndarray:
        """Position coordinates of a dm_control physics in its current state."""
        if self.kind == "geom":
            return np.array(physics.named.data.geom_xpos[self.name][:2], dtype=np.float64)
        qpos = np.asarray(physics.data.qpos, dtype=np.float64)
        return qpos.copy() if self.indices is None else qpos[list(self.indices)]

    def of_qpos_batch(self, model: mujoco.MjModel, scratch: mujoco.MjData, qpos: np.ndarray) -> np.ndarray:
        """Position coordinates for a batch of joint positions ``qpos`` (N, nq) -> (N, P).

        Used by the simulator oracle on states from ``mujoco.rollout``. Geom positions need forward
        kinematics per state; MuJoCo offers no batched kinematics, so this loops in C-backed calls
        (about 10 us each), which is small next to the rollout itself.
        """
        if self.kind == "qpos":
            return qpos.copy() if self.indices is None else qpos[:, list(self.indices)]
        geom_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, self.name)
        positions = np.empty((len(qpos), 2))
        for i, q in enumerate(qpos):
            scratch.qpos[:] = q
            mujoco.mj_kinematics(model, scratch)
            positions[i] = scratch.geom_xpos[geom_id, :2]
        return positions


@dataclass(frozen=True)
class GoalTask:
    """How to draw goals for one task and when a goal counts as reached.

    ``goal_sampler`` is ``"random_joints"`` (a uniformly random joint configuration, as the task's own
    initialisation draws it; every such configuration is reachable for these arms and masses) or
    ``"random_rollout"`` (the state after ``goal_steps`` uniformly random actions from the start:
    reachable by construction, for any domain).
    """

    position: PositionSpec
    success_radius: float | None  # None: read from the marker geom's size after reset
    goal_sampler: str
    marker_geom: str | None = None  # a geom moved onto the goal position so frames show the goal


def goal_task_for(domain: str, task: str, success_radius: float | None, position_indices=None) -> GoalTask:
    """The goal definition of ``domain-task``; ``success_radius`` overrides the task's own radius."""
    name = f"{domain}-{task}"
    if domain == "reacher":
        # Success: the fingertip within the target radius of the goal fingertip position.
        return GoalTask(PositionSpec("geom", name="finger"), success_radius, "random_joints", "target")
    if name == "point_mass-easy":
        radius = 0.03 if success_radius is None else success_radius
        return GoalTask(PositionSpec("geom", name="pointmass"), radius, "random_joints", "target")
    if success_radius is None:
        raise ValueError(
            f"task '{name}' has no built-in success criterion; set env.success_radius (a distance on "
            f"its joint positions, e.g. 0.1) to use the generic random-rollout goals "
            f"(tasks with a built-in criterion: {', '.join(SPECIFIC_TASKS)})"
        )
    indices = None if position_indices is None else tuple(int(i) for i in position_indices)
    return GoalTask(PositionSpec("qpos", indices=indices), success_radius, "random_rollout")


def check_suite_task(domain: str, task: str) -> None:
    """Fail early, naming the nearest valid task, when ``domain-task`` is not in dm_control.suite."""
    from dm_control import suite

    valid = [f"{d}-{t}" for d, t in suite.ALL_TASKS]
    name = f"{domain}-{task}"
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown dm_control task '{name}'{hint} (see dm_control.suite.ALL_TASKS)")


def randomize_joints(physics, random: np.random.RandomState) -> None:
    """A uniformly random joint configuration, the same way the suite's tasks initialise episodes."""
    with physics.reset_context():
        randomizers.randomize_limited_and_rotational_joints(physics, random)
