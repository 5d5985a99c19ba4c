"""jepa-wm plan as a script (the same as `jepa-wm plan`; see `jepa-wm plan --help`)."""

from jepa_wm.cli import script

if __name__ == "__main__":
    script("plan")
