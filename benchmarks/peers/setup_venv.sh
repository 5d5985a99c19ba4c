#!/usr/bin/env bash
# Build (or bring up to date) the separate virtual environment in which the peer methods of the "peers"
# benchmark run: stable-worldmodel 0.1.1 (LeWM, PLDM, GCBC/GCIVL and its CEM solver) with what its training
# code needs (stable-pretraining, hydra, transformers), the HDF5 format extra, dm_control for its
# DeepMind Control envs, and this repository (editable) so `jepa_wm` (with jepa_wm.data) imports there too.
#
#     bash benchmarks/peers/setup_venv.sh                 # -> /work/peers-venv
#     PEERS_VENV=/some/where bash benchmarks/peers/setup_venv.sh
#
# Idempotent: a second run only checks that everything is installed (pip is a no-op then).
# Never install stable-worldmodel into the project's own .venv: its dependencies (pyarrow, lance, lightning,
# transformers) move versions that jepa_wm's environment is tested with.
#
# Pins, and why:
#   numpy<2                        the project's environment runs numpy 1.26; the peer envs must produce the
#                                  same episodes as ours
#   pyarrow<23                     with numpy 1.x, one of the two pins under which stable-worldmodel's Reacher
#                                  reproduced bit-identical episodes (pyarrow 23.0.1 + numpy 1.26.4 + pylance
#                                  14.0.2 did import and write/read a Lance table here; the pin is kept as
#                                  the reproduction recorded it)
#   opencv-python-headless<4.12    the other pin: 4.12 cannot be resolved with numpy<2
#   mujoco<4                       dm_control 1.0.x reads MjModel attributes mujoco 4 removed (as in setup.cfg)
# `pip check` reports "decord 0.6.0 is not supported on this platform" (the [format] extra's video reader,
# unused here); that is the only conflict it lists.
# torch/torchvision come from PyPI; where pip is capped by /etc/xdg/pip/constraints.txt (torch<=2.14.1,
# torchvision<=0.29.1) pip picks those releases from this machine's wheel cache.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${PEERS_VENV:-/work/peers-venv}"
PYTHON="${PEERS_PYTHON:-python3.11}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade "pip>=24" wheel setuptools

"${PIP[@]}" install \
    "stable-worldmodel[train,format]==0.1.1" \
    "stable-pretraining==0.1.8" \
    "numpy<2" \
    "pyarrow<23" \
    "opencv-python-headless<4.12" \
    "dm_control>=1.0.20" \
    "mujoco>=3.1.6,<4" \
    "h5py" "hdf5plugin" \
    "torch" "torchvision"

# This repository, editable, without re-resolving what is installed above.
"${PIP[@]}" install --no-deps -e "$REPO"
# jepa_wm's own runtime dependencies that the peer stack does not already bring.
"${PIP[@]}" install "pytorch-lightning>=2.2" "timm>=1.0" "omegaconf>=2.3" imageio tqdm matplotlib "numpy<2"

"${PIP[@]}" check || echo "pip check reported conflicts (see above)"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import stable_worldmodel, jepa_wm, data  # noqa: F401  (all three import)
for name in ("stable-worldmodel", "stable-pretraining", "torch", "torchvision", "numpy", "pyarrow", "pylance",
             "lancedb", "h5py", "hdf5plugin", "hydra-core", "omegaconf", "lightning", "pytorch-lightning",
             "transformers", "timm", "gymnasium", "dm_control", "mujoco", "opencv-python-headless"):
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: not installed")
PY
"${PIP[@]}" freeze > "$VENV/freeze.txt"
echo "ok: $VENV (full list in $VENV/freeze.txt)"
