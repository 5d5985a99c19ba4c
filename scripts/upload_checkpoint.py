"""jepa-wm upload as a script (the same as `jepa-wm upload`; see `jepa-wm upload --help`)."""

from jepa_wm.cli import script

if __name__ == "__main__":
    script("upload")
