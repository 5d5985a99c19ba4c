"""jepa-wm quickstart as a script (the same as `jepa-wm quickstart`; see `jepa-wm quickstart --help`)."""

from jepa_wm.cli import script

if __name__ == "__main__":
    script("quickstart")
