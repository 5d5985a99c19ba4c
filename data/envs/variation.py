"""What changes between episodes: visual and physical variation of a task's scene, drawn from the episode's seed.

A world model trained on one look and one physics may plan well only there. ``env.variation`` (every env config)
sets a strength in [0, 1] per factor; at each ``reset(seed)`` the env draws that episode's change from a generator
seeded by the episode seed alone (so every method sees the same scene on the same episode) and applies it to the
MuJoCo model before the start and the goal are drawn (the goal image shows the same scene):

| factor | what changes (strength 1 = the whole range) |
| --- | --- |
| ``floor_colour`` | the floor's colour: each RGB channel moved by up to +-0.5 |
| ``body_colour`` | every body's colour: each RGB channel moved by up to +-0.5 |
| ``light`` | the lights' and the headlight's brightness: scaled by 1 +- 0.6 |
| ``camera`` | the camera's view direction: turned by up to 10 degrees about a random axis |
| ``distractors`` | up to 4 coloured shapes drawn above the floor, seen by the camera, touching nothing |
| ``mass`` | every body's mass and inertia: scaled by 1 +- 0.5 (each body its own draw) |
| ``friction`` | every geom's sliding friction: scaled by 2^(+-1) |
| ``actuator_gain`` | every actuator's gear: scaled by 1 +- 0.3 |

Each value is drawn uniformly within ``strength`` x its range, so strength 0 is the nominal task. Visual factors
change only what the camera sees; physical ones change what actions do (the simulator oracle plans with them).
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

VISUAL_FACTORS = ("floor_colour", "body_colour", "light", "camera", "distractors")
PHYSICAL_FACTORS = ("mass", "friction", "actuator_gain")
FACTORS = VISUAL_FACTORS + PHYSICAL_FACTORS
FLOOR_GEOMS = ("floor", "ground")
MAX_DISTRACTORS = 4
DRAWS = 64  # uniform draws per factor and episode: enough for every body, actuator and distractor of the suite


def check_strengths(strengths) -> dict[str, float]:
    """``{factor: strength}`` with every factor known and every strength in [0, 1] (None: no variation)."""
    strengths = dict(strengths or {})
    unknown = sorted(set(strengths) - set(FACTORS))
    if unknown:
        raise ValueError(f"unknown variation factor(s) {unknown} (choices: {', '.join(FACTORS)})")
    for name, value in strengths.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ValueError(f"variation.{name} must be a strength in [0, 1]; got {value!r}")
    return {name: float(value) for name, value in strengths.items() if value > 0}


def recorded_env(env_cfg) -> dict:
    """An env config as a dataset records it: ``variation`` only when some factor is on, so that a config from
    before the key and one with every strength 0 describe the same data (and a dataset resumes either way); no
    planning settings (``PLANNING_KEYS``), which choose how to plan in the task, not what the data holds."""
    from jepa_wm.data.envs.tasks import PLANNING_KEYS

    settings = {key: value for key, value in dict(env_cfg).items() if key not in PLANNING_KEYS}
    if not check_strengths(settings.get("variation")):
        settings.pop("variation", None)
    return settings


class SceneVariation:
    """Applies one episode's variation to a dm_control physics, always starting again from the nominal model."""

    def __init__(self, physics, strengths, skip_geoms=()):
        self.strengths = check_strengths(strengths)
        model = physics.model
        if max(model.nbody, model.nu, 8 * MAX_DISTRACTORS) > DRAWS:
            raise ValueError(f"variation draws {DRAWS} values per factor; this model has {model.nbody} bodies")
        self.physics = physics
        floor = [i for i in range(model.ngeom) if model.id2name(i, "geom") in FLOOR_GEOMS]
        skipped = {model.name2id(name, "geom") for name in skip_geoms if name}
        self.floor_geoms = np.array(floor, dtype=int)
        self.body_geoms = np.array([i for i in range(model.ngeom) if i not in floor and i not in skipped
                                    and model.geom_rgba[i, 3] > 0], dtype=int)
        self.floor_materials = np.unique([m for m in model.geom_matid[self.floor_geoms] if m >= 0]).astype(int)
        self.body_materials = np.unique([m for m in model.geom_matid[self.body_geoms] if m >= 0]
                                        ).astype(int)
        self.body_materials = np.setdiff1d(self.body_materials, self.floor_materials)
        fields = ("geom_rgba", "mat_rgba", "light_diffuse", "light_ambient", "cam_quat", "body_mass",
                  "body_inertia", "geom_friction", "actuator_gear")
        self.nominal = {name: np.array(getattr(model, name), copy=True) for name in fields}
        self.nominal_headlight = np.array(model.vis.headlight.diffuse, copy=True)
        self.distractors: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (type, size, position, rgba)
        self.drawn: dict[str, float] = {}

    def apply(self, seed: int) -> dict[str, float]:
        """The variation of the episode ``seed``: nominal values back, then each factor's draw. Returns a summary
        of what was drawn (recorded with the episode)."""
        model = self.physics.model
        for name, value in self.nominal.items():
            getattr(model, name)[:] = value
        model.vis.headlight.diffuse[:] = self.nominal_headlight
        self.distractors = []
        self.drawn = {}
        random = np.random.RandomState(np.random.SeedSequence([int(seed) % 2**32, 0x5CE4E]).generate_state(1)[0])
        for name in FACTORS:  # a fixed order: one factor's draws never depend on which others are on
            strength = self.strengths.get(name, 0.0)
            draws = random.uniform(-1, 1, size=DRAWS)  # every factor takes the same count, on or off
            if strength > 0:
                self.drawn[name] = getattr(self, f"_{name}")(model, strength, draws)
        # Masses, gears and cameras feed constants MuJoCo derives once (subtree masses, which a tracking camera
        # follows; the cameras' rest frames): derive them again from the values just set.
        mujoco.mj_setConst(model.ptr, self.physics.data.ptr)
        self.physics.forward()
        return dict(self.drawn)

    # Each factor reads its strength s and uniform draws u in [-1, 1] (a change of s * u x its range) and returns
    # one number to record.
    def _floor_colour(self, model, s, u) -> float:
        return self._tint(model, 0.5 * s * u[:3], self.floor_materials, self.floor_geoms)

    def _body_colour(self, model, s, u) -> float:
        return self._tint(model, 0.5 * s * u[:3], self.body_materials, self.body_geoms)

    def _tint(self, model, shift, materials, geoms) -> float:
        """Move the RGB of ``materials`` and ``geoms`` by ``shift`` from their nominal colour (clipped to [0, 1])."""
        model.mat_rgba[materials, :3] = np.clip(self.nominal["mat_rgba"][materials, :3] + shift, 0, 1)
        model.geom_rgba[geoms, :3] = np.clip(self.nominal["geom_rgba"][geoms, :3] + shift, 0, 1)
        return float(np.abs(shift).max())

    def _light(self, model, s, u) -> float:
        scale = 1 + 0.6 * s * u[0]
        model.light_diffuse[:] = np.clip(self.nominal["light_diffuse"] * scale, 0, 1)
        model.light_ambient[:] = np.clip(self.nominal["light_ambient"] * scale, 0, 1)
        model.vis.headlight.diffuse[:] = np.clip(self.nominal_headlight * scale, 0, 1)
        return float(scale)

    def _camera(self, model, s, u) -> float:
        angle = math.radians(10) * s * abs(u[0])
        axis = np.array([u[1], u[2], u[3]], dtype=np.float64)
        axis = axis / np.linalg.norm(axis) if np.linalg.norm(axis) > 1e-9 else np.array([0.0, 0.0, 1.0])
        turn = np.empty(4)
        mujoco.mju_axisAngle2Quat(turn, axis, angle)
        for camera in range(model.ncam):  # tracking cameras' world-frame cam_mat0 follows (mj_setConst in apply)
            quat = np.empty(4)
            mujoco.mju_mulQuat(quat, self.nominal["cam_quat"][camera], turn)
            model.cam_quat[camera] = quat
        return float(math.degrees(angle))

    def _distractors(self, model, s, u) -> float:
        count = int(round(MAX_DISTRACTORS * s))
        extent = float(model.stat.extent)
        centre = np.array(model.stat.center, dtype=np.float64)
        for index in range(count):
            part = u[8 * index: 8 * index + 8]
            kind = (mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_BOX)[int(part[0] > 0)]
            size = np.full(3, 0.04 + 0.04 * abs(part[1])) * max(extent, 0.5)
            position = centre + np.array([0.5 * part[2], 0.5 * part[3], 0.1 * abs(part[4])]) * max(extent, 0.5)
            rgba = np.array([0.5 + 0.5 * part[5], 0.5 + 0.5 * part[6], 0.5 + 0.5 * part[7], 1.0])
            self.distractors.append((int(kind), size, position, rgba))
        return float(count)

    def _mass(self, model, s, u) -> float:
        scale = 1 + 0.5 * s * u[: model.nbody]
        scale[0] = 1.0  # the world body has no mass
        model.body_mass[:] = self.nominal["body_mass"] * scale
        model.body_inertia[:] = self.nominal["body_inertia"] * scale[:, None]
        return float(np.abs(scale - 1).max())

    def _friction(self, model, s, u) -> float:
        scale = 2.0 ** (s * u[0])
        model.geom_friction[:, 0] = self.nominal["geom_friction"][:, 0] * scale
        return float(scale)

    def _actuator_gain(self, model, s, u) -> float:
        scale = 1 + 0.3 * s * u[: model.nu]
        model.actuator_gear[:, 0] = self.nominal["actuator_gear"][:, 0] * scale
        return float(np.abs(scale - 1).max())

    def scene_callback(self, physics, scene) -> None:
        """Adds this episode's distractors to the rendered scene (drawn only: the physics never meets them)."""
        for kind, size, position, rgba in self.distractors:
            if scene.ngeom >= scene.maxgeom:
                return
            scene.ngeom += 1  # the bindings show the scene's first ngeom geoms: count it in, then fill it
            mujoco.mjv_initGeom(scene.geoms[scene.ngeom - 1], kind, size, position, np.eye(3).ravel(),
                                rgba.astype(np.float32))
