"""jepa-wm collect as a script (the same as `jepa-wm collect`; see `jepa-wm collect --help`)."""

from jepa_wm.cli import script

if __name__ == "__main__":
    script("collect")
