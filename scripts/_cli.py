"""What every entry point shares: user errors end the program with their message, not a traceback.

Scripts import the package inside ``main``, so that Ctrl-C during the (slow) imports is handled too.
"""

import sys


def run_cli(main) -> None:
    """Run ``main(argv)``; a bad config, dataset or checkpoint (or a diverged run) prints one line and exits 2."""
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt as interrupt:
        print(f"interrupted: {str(interrupt) or 'rerun the same command to continue where it stopped'}", file=sys.stderr)
        sys.exit(130)
    except Exception as error:
        from data.storage import DatasetError
        from jepa_wm.errors import CheckpointError, ConfigError, NonFiniteLossError

        if not isinstance(error, (ConfigError, DatasetError, CheckpointError, NonFiniteLossError)):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def print_result(result: dict) -> None:
    """The success table of a planning result, then the paths of the files it wrote."""
    print(result["table"])
    for kind, path in result["files"].items():
        if path is not None:
            print(f"{kind}: {path}")
