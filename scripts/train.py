"""jepa-wm train as a script (the same as `jepa-wm train`; see `jepa-wm train --help`)."""

from jepa_wm.cli import script

if __name__ == "__main__":
    script("train")
