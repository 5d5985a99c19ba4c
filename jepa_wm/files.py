"""Files that are never half-written, temporaries that are never confused with a user's, and directory locks.

The one home of how jepa-wm writes: every dataset file, checkpoint, run record, report and benchmark
table goes through ``atomic_write`` (a temporary file in the same directory, flushed to disk, then renamed
over the target), so a kill or a full disk at any moment leaves the old file or the new one, never half of
one, and no temporary behind. Temporaries are named ``.<target>.<random>.partial``; ``remove_temporaries``
deletes only those of the targets it is told about, so a user's own ``*.partial`` files are never touched.
Writers of a directory (a collection, a training run) hold a ``DirectoryLock``: a second writer is refused
instead of interleaving files with the first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from jepa_wm.errors import ConfigError

TEMP_SUFFIX = ".partial"
_UMASK = os.umask(0o022)  # reading the umask means setting it; restored on the next line, at import
os.umask(_UMASK)


def temporary_prefix(path: Path) -> str:
    return f".{Path(path).name}."


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def _as_disk_full(error: BaseException, path: Path) -> BaseException:
    """Libraries report a full disk in their own words (torch.save: "unexpected pos 576 vs 534"); when the
    disk is in fact (almost) full, say so as the OSError it is."""
    if isinstance(error, Exception) and not isinstance(error, OSError) and free_bytes(path.parent) < (1 << 20):
        disk_full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        disk_full.__cause__ = error
        return disk_full
    return error


def atomic_write(path: Path, write: Callable[[Any], Any], text: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, flush it to disk, then rename it into place.

    The file gets the permissions ``open()`` would give it (0o666 less the umask), so results can be shared
    like any other file. On any failure (a full disk, a kill, an exception in ``write``) the temporary is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(handle, "w" if text else "wb", **({"newline": ""} if text else {})) as file:
            os.fchmod(file.fileno(), 0o666 & ~_UMASK)
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        disk_full = _as_disk_full(error, path)
        if disk_full is not error:
            raise disk_full from error
        raise
    return path


@contextlib.contextmanager
def atomic_path(path: Path):
    """For writers that want a file name (a library's ``save(path)``): yields a temporary path next to
    ``path``; when the block ends without an error, that file is flushed to disk and renamed over ``path``.
    On any failure the temporary is removed and ``path`` is left as it was."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=TEMP_SUFFIX)
    os.close(handle)
    try:
        yield Path(temporary)
        with open(temporary, "rb") as file:
            os.fchmod(file.fileno(), 0o666 & ~_UMASK)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        disk_full = _as_disk_full(error, path)
        if disk_full is not error:
            raise disk_full from error
        raise


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda file: file.write(data))


def write_text_atomic(path: Path, text: str) -> Path:
    return atomic_write(path, lambda file: file.write(text), text=True)


def write_json_atomic(path: Path, payload: Any) -> Path:
    return write_bytes_atomic(path, json.dumps(payload, indent=2, sort_keys=True).encode())


def save_torch_atomic(path: Path, obj: Any) -> Path:
    """``torch.save`` through ``atomic_write``."""
    import torch

    return atomic_write(path, lambda file: torch.save(obj, file))


def is_temporary_of(name: str, targets: Iterable[str]) -> bool:
    """Whether ``name`` is a temporary ``atomic_write`` makes for one of ``targets`` (glob patterns allowed)."""
    return any(fnmatch.fnmatchcase(name, f".{target}.*{TEMP_SUFFIX}") for target in targets)


def remove_temporaries(directory: Path, targets: Iterable[str]) -> int:
    """Delete the temporaries that ``atomic_write`` left for these target names (glob patterns allowed, e.g.
    ``shard-*.npy``) when a writer was killed; returns how many. Any other file, ``*.partial`` or not, stays."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    targets = list(targets)
    removed = 0
    for entry in directory.iterdir():
        if entry.is_file() and is_temporary_of(entry.name, targets):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


class DirectoryLock:
    """An exclusive, advisory lock on a directory for as long as one writer works in it.

    ``flock`` on the directory itself, so no lock file is left behind; the kernel releases it when the process
    ends, also after a kill -9, so a stale lock never blocks a rerun. A second writer gets ``ConfigError``.
    Where the file system cannot lock (some network file systems), writing goes on unlocked.
    """

    def __init__(self, directory: Path, what: str):
        self.directory, self.what = Path(directory), what
        self._descriptor: int | None = None

    def __enter__(self) -> "DirectoryLock":
        descriptor = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise ConfigError(f"{self.directory} is in use: another process is writing {self.what} there; wait "
                                  f"for it to finish, or choose another out=") from None
            return self  # no locks on this file system
        self._descriptor = descriptor
        return self

    def __exit__(self, *exc) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the last descriptor releases the lock
            self._descriptor = None


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output_directory(path, key: str = "out") -> Path:
    """Refuse, before any work, an output directory that is a file or that this user cannot create or write.

    Nothing is created: the nearest existing ancestor must be a writable directory.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={path} is a file; pass a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}={path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path} is not writable ({existing} does not let this user write); choose another {key}=")
    return path


def strangers(directory: Path, own: Iterable[str]) -> list[str]:
    """Names of the entries of ``directory`` that match none of the ``own`` patterns (nor a temporary of one):
    what a writer of ``directory`` did not write and must neither delete nor replace."""
    own = list(own)
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(entry.name for entry in directory.iterdir()
                  if not any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in own)
                  and not is_temporary_of(entry.name, own))


def remove_own_directories(directories: dict[Path, Iterable[str]], why: str) -> None:
    """Delete each directory whose entries all match its own patterns (see ``strangers``); if any of them holds
    something else, delete nothing and raise ``ConfigError`` naming it. Only what jepa-wm wrote is ever deleted."""
    for directory, own in directories.items():
        found = strangers(directory, own)
        if found:
            raise ConfigError(f"{directory} holds files jepa-wm did not write ({', '.join(found[:3])}); {why} deletes "
                              f"only jepa-wm's own files: move them away, or choose another out=")
    for directory in directories:
        if Path(directory).is_dir():
            shutil.rmtree(directory)
