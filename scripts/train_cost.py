"""jepa-wm train-cost as a script (the same as `jepa-wm train-cost`; see `jepa-wm train-cost --help`)."""

from jepa_wm.cli import script

if __name__ == "__main__":
    script("train-cost")
