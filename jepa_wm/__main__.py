"""``python -m jepa_wm COMMAND key=value ...``: the same as the ``jepa-wm`` command."""

from jepa_wm.cli import main

main()
