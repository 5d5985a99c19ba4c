"""jepa-wm convert as a script (the same as `jepa-wm convert`; see `jepa-wm convert --help`)."""

from jepa_wm.cli import script

if __name__ == "__main__":
    script("convert")
