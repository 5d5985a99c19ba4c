"""What every entry point shares: user errors end the program with their message, not a traceback.

Scripts import the package inside ``main``, so that Ctrl-C during the (slow) imports is handled too.
"""

import errno
import sys

# Errors of the file system that come from where and how much the user asked to write, not from a bug.
FILE_SYSTEM_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR)


def run_cli(main) -> None:
    """Run ``main(argv)``; a bad config, dataset or checkpoint (or a diverged run) prints one line and exits 2."""
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt as interrupt:
        print(f"interrupted: {str(interrupt) or 'rerun the same command to continue where it stopped'}", file=sys.stderr)
        sys.exit(130)
    except Exception as error:
        from data.storage import DatasetError
        from jepa_wm.errors import CheckpointError, ConfigError, NonFiniteLossError, TrainingTerminated

        if isinstance(error, TrainingTerminated):
            print(f"terminated: {error}", file=sys.stderr)
            sys.exit(143)  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended
        if isinstance(error, OSError) and error.errno in FILE_SYSTEM_ERRORS:
            # A full disk, a read-only or forbidden place: what the user must fix; writes were atomic
            where = f" {error.filename}" if error.filename else ""
            print(f"error: cannot write{where}: {error.strerror or error}; free space or choose another out=, "
                  f"then rerun the same command", file=sys.stderr)
            sys.exit(2)
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
