"""Atomic file writes and small JSON helpers: an interrupted run never leaves a half file."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def remove_stale_temporaries(path: str | os.PathLike, suffix: str = "") -> None:
    """Delete what an interrupted write of `path` left: `.<name>.*.tmp<suffix>` files and
    folders (every temporary of this project is named so)."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp{suffix}"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, then rename the temporary file onto `path`. Temporary files of
    an earlier, interrupted write of the same path are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def write_npz(path: str | os.PathLike, **arrays) -> None:
    """Arrays to an uncompressed .npz, atomically (read back with allow_pickle=False)."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSON file not found: {path}")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"cannot parse JSON file {path}: {err}") from None


class LockedError(RuntimeError):
    """A folder is in use by another living process."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "run directory"):
    """Hold `<folder>/.lock` (holding this process's PID) for the block. Another living
    process's lock is an error naming it; a dead process's lock is taken over; a lock this
    process already holds is re-entered (and left to the outer holder to release)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pid = -1  # unreadable or half-written: treat as stale
            if pid == os.getpid():
                yield
                return
            if pid > 0 and _pid_alive(pid):
                raise LockedError(
                    f"{what} {folder} is in use by process {pid} ({lock}); wait for it to "
                    "finish or choose another run_dir"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        break
    else:
        raise LockedError(f"cannot take the lock {lock}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def npy_complete(path: str | os.PathLike) -> bool:
    """True when the .npy file holds every byte its header promises (a write cut short by a
    kill or a full disk leaves fewer)."""
    import numpy as np

    path = Path(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except (OSError, ValueError):
        return False
    expected = offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return path.stat().st_size >= expected


def open_npy_for_writing(path: str | os.PathLike, dtype, shape: tuple):
    """A writable memory-mapped .npy of `shape`, after checking that the disk holds it: a
    memory map that runs out of disk kills the process with SIGBUS and no message."""
    import numpy as np

    path = Path(path)
    needed = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize + 4096
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise OSError(
            f"not enough disk space to write {path}: {needed:,} bytes needed, {free:,} free"
        )
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def finite_or_none(values) -> list:
    """Floats for JSON, with None where a value is not finite (NaN is not valid JSON)."""
    return [float(v) if math.isfinite(v) else None for v in values]


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike):
    """A temporary sibling folder to fill; on success it replaces `path` (whole), on an error it
    is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
