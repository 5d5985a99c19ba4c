"""Headless rendering defaults, applied before dm_control is imported anywhere in the package."""

import importlib.util
import os


def ensure_headless_rendering() -> None:
    """Use EGL (GPU or Mesa software) unless the user already chose a backend, e.g. ``osmesa``.

    dm_control picks its OpenGL backend at import time and falls back to GLFW, which needs a display;
    setting ``MUJOCO_GL`` first is the only reliable way to render on servers and CI machines.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    # PyOpenGL must agree with MuJoCo on the platform, otherwise context creation fails.
    if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    _load_triton_before_opengl()


def _load_triton_before_opengl() -> None:
    """Import triton (when installed) before MuJoCo opens an OpenGL library.

    Mesa's EGL/OSMesa drivers and triton each carry their own LLVM; when Mesa's is loaded first, the
    later ``import triton`` (which torchvision, and so timm, triggers through torch._dynamo) crashes
    the process with a segmentation fault. Loading triton first avoids the clash.
    """
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
