"""jepa-wm train-policy as a script (the same as `jepa-wm train-policy`; see `jepa-wm train-policy --help`)."""

from jepa_wm.cli import script

if __name__ == "__main__":
    script("train-policy")
