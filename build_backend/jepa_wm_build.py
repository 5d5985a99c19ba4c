"""setuptools' build backend, leaving the source tree as it found it.

``pip install .`` builds a wheel in the project directory, and setuptools leaves ``build/`` and
``jepa_wm.egg-info/`` behind there; a later ``pip install -e .`` or a test run then sees stale copies of the
sources. This wrapper removes what a wheel build created (never what was there before). Editable installs
are setuptools' own, unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403 - every hook not wrapped below is setuptools' own

LEFT_BY_A_WHEEL_BUILD = ("build", "jepa_wm.egg-info")


def _leaving_no_build_files(hook):
    def wrapped(*args, **kwargs):
        there_before = {name for name in LEFT_BY_A_WHEEL_BUILD if Path(name).exists()}
        try:
            return hook(*args, **kwargs)
        finally:
            for name in set(LEFT_BY_A_WHEEL_BUILD) - there_before:
                shutil.rmtree(name, ignore_errors=True)

    wrapped.__name__, wrapped.__doc__ = hook.__name__, hook.__doc__
    return wrapped


build_wheel = _leaving_no_build_files(_setuptools.build_wheel)
build_sdist = _leaving_no_build_files(_setuptools.build_sdist)
prepare_metadata_for_build_wheel = _leaving_no_build_files(_setuptools.prepare_metadata_for_build_wheel)
