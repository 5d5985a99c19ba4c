"""Run one of stable-worldmodel's training scripts (``scripts/train/<method>.py`` of its source tree at tag
0.1.1; the PyPI package ships no scripts) in the peers venv, with the two fixes its goal-conditioned
scripts need there.

    /work/peers-venv/bin/python benchmarks/peers/run_upstream.py SWM_SRC/scripts/train/gcbc.py [hydra overrides]

Fix 1: in 0.1.1, ``stable_worldmodel/wm/__init__.py`` star-imports ``stable_worldmodel.wm.gcrl``, whose
public names include its own submodule ``gcrl``; so ``swm.wm.gcrl`` ends up being the *module*
``wm/gcrl/gcrl.py`` (which holds only ``GCRL``), and the goal-conditioned scripts (gcbc.py, gcivl.py,
gciql.py, hilp.py) fail with ``module 'stable_worldmodel.wm.gcrl.gcrl' has no attribute 'Predictor'``.
Upstream fixed it after 0.1.1 by giving ``wm/gcrl/__init__.py`` an explicit ``__all__`` (GCRL, Embedder,
ExpectileLoss, Predictor, QPredictor); this puts the package back in place with those names.

Fix 2: gcbc.py, gcivl.py, gciql.py and hilp.py pass ``ckpt_path=<cache>/checkpoints/<name>_weights.ckpt`` to
``spt.Manager`` whether or not that file exists, and stable-pretraining (0.1.7 and 0.1.8 alike) refuses a
``ckpt_path`` that does not exist ("Refusing to silently start training from scratch"). lewm.py and
pldm.py pass ``ckpt_path if ckpt_path.exists() else None``; this makes ``Manager`` do the same for every
script, so a first run starts from scratch and a rerun resumes. Those scripts also expect the trained
module's Lightning checkpoint at that path afterwards (gcivl.py, gciql.py and hilp.py load the value
phase's ``<name>_value_weights.ckpt`` to train the actor), which stable-pretraining 0.1.8 writes under
its own run directory instead; so when the run ends without that file, it is written there
(``trainer.save_checkpoint``).

Nothing else changes: the script runs as ``__main__`` with its own hydra config directory.
"""

from __future__ import annotations

import importlib
import runpy
import sys
from pathlib import Path


def fix_gcrl_namespace() -> None:
    import stable_worldmodel as swm

    package = importlib.import_module("stable_worldmodel.wm.gcrl")
    module = importlib.import_module("stable_worldmodel.wm.gcrl.module")
    model = importlib.import_module("stable_worldmodel.wm.gcrl.gcrl")
    for name in ("Embedder", "ExpectileLoss", "Predictor", "QPredictor"):
        setattr(package, name, getattr(module, name))
    package.GCRL = model.GCRL
    swm.wm.gcrl = package


def resume_only_from_existing_checkpoints() -> None:
    import stable_pretraining as spt

    original_init, original_call = spt.Manager.__init__, spt.Manager.__call__

    def __init__(self, *args, ckpt_path=None, **kwargs):
        self._requested_ckpt_path = None
        if ckpt_path is not None and not Path(ckpt_path).expanduser().with_suffix(".ckpt").exists():
            self._requested_ckpt_path = Path(ckpt_path).expanduser().with_suffix(".ckpt")
            ckpt_path = None
        original_init(self, *args, ckpt_path=ckpt_path, **kwargs)

    def __call__(self):
        result = original_call(self)
        target = self._requested_ckpt_path
        if target is not None and not target.exists() and self._trainer.is_global_zero:
            self._trainer.save_checkpoint(str(target))
        return result

    spt.Manager.__init__ = __init__
    spt.Manager.__call__ = __call__


def main(argv: list[str]) -> None:
    if not argv or not argv[0].endswith(".py"):
        raise SystemExit("usage: run_upstream.py PATH/TO/scripts/train/<method>.py [hydra overrides...]")
    script = Path(argv[0]).resolve()
    if not script.is_file():
        raise SystemExit(f"{script} does not exist")
    fix_gcrl_namespace()
    resume_only_from_existing_checkpoints()
    sys.argv = [str(script), *argv[1:]]
    sys.path.insert(0, str(script.parent))
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
