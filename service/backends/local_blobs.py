"""Blobs as files under one directory, written atomically.

A key maps to a relative path (``storyboards/n1/j1.json`` → ``<root>/storyboards/n1/j1.json``).
A key that could name anything outside the root is refused twice: lexically, before any
I/O, and by following any symlink met below the root to check where it leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import stat
import threading
from pathlib import Path

from service.errors import BackendError, BlobNotFound

# Errors a write gets because of the key itself: a path component that is already a file,
# a key that is already a directory (S3 allows both "a" and "a/b"; a filesystem does not),
# or a name too long for the filesystem.
_KEY_ERRNOS = frozenset({errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG})
# No O_EXCL: temporary names are unique among live writers (see _temporary_for), so an
# existing file is a leftover of a crashed one and may be overwritten. O_NOFOLLOW keeps a
# planted symlink from redirecting the write.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
_sequence = itertools.count()


class LocalBlobStore:
    """A :class:`~service.ports.BlobStore` on the local filesystem; open with :meth:`open`.

    The content type is not stored: nothing reads it back from the local store.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @classmethod
    async def open(cls, root: Path) -> LocalBlobStore:
        """Create ``root`` if needed and prove it writable; :class:`BackendError` if not."""
        try:
            store = await asyncio.to_thread(cls, root)
            await asyncio.to_thread(_probe, store.root)
        except OSError as exc:
            raise BackendError(f"blob directory {root} is not writable: {exc.strerror}") from None
        return store

    def path_for(self, key: str) -> Path:
        """The file for ``key``; :class:`ValueError` for a key that could escape the root."""
        if not key or key.startswith("/") or "\\" in key or "\0" in key:
            raise ValueError(f"invalid blob key {key!r}")
        if any(part in ("", ".", "..") for part in key.split("/")):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store ``data`` under ``key``; readers see the old bytes or the new, never a mix.

        A cancelled put returns only once its write has finished: the thread writing it
        cannot be stopped, and a write landing after its caller moved on (say, after an
        erasure deleted what the caller had written) would leave a blob behind.
        """
        path = self.path_for(key)
        write = asyncio.ensure_future(asyncio.to_thread(_write_atomically, self.root, path, data))
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            await asyncio.wait([write])
            raise
        except OSError as exc:
            if exc.errno in _KEY_ERRNOS:
                raise ValueError(f"blob key {key!r} cannot be stored: {exc.strerror}") from None
            raise BackendError(f"cannot write blob {path}: {exc.strerror}") from exc

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`~service.ports.BlobNotFound` if there are none."""
        path = self.path_for(key)
        try:
            return await asyncio.to_thread(_read, self.root, path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        except OSError as exc:
            raise BackendError(f"cannot read blob {path}: {exc.strerror}") from exc

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        path = self.path_for(key)
        try:
            await asyncio.to_thread(_unlink, self.root, path)
        except (IsADirectoryError, NotADirectoryError):
            return  # No blob has this key, only longer keys under it.
        except OSError as exc:
            raise BackendError(f"cannot delete blob {path}: {exc.strerror}") from exc

    async def list_keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix`` (writes still in flight excluded)."""
        directory, stem = self._prefix_parts(prefix)
        try:
            return await asyncio.to_thread(_keys_under, self.root, directory, stem)
        except OSError as exc:
            raise BackendError(f"cannot list blobs under {directory}: {exc.strerror}") from exc

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` and the directories it leaves empty."""
        directory, stem = self._prefix_parts(prefix)
        try:
            return await asyncio.to_thread(_delete_under, self.root, directory, stem)
        except OSError as exc:
            raise BackendError(f"cannot delete blobs under {directory}: {exc.strerror}") from exc

    def _prefix_parts(self, prefix: str) -> tuple[Path, str]:
        """The directory a prefix ends in and the start of the names it covers there:
        ``checkpoints/j1/a-`` → (``<root>/checkpoints/j1``, ``a-``)."""
        if not prefix:
            raise ValueError("an empty prefix would name every blob")
        head, _, stem = prefix.rpartition("/")
        if "\\" in stem or "\0" in stem:
            raise ValueError(f"invalid blob prefix {prefix!r}")
        return (self.path_for(head) if head else self.root), stem

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the blob directory is there."""
        if not await asyncio.to_thread(self.root.is_dir):
            raise BackendError(f"blob directory {self.root} is missing")


def _refuse_escaping_links(root: Path, path: Path) -> None:
    """Raise :class:`ValueError` if a symlink below ``root`` on ``path`` leads outside it."""
    # Only the components below the root can be links we did not vet at open. Checking them
    # one lstat each is far cheaper than resolving the whole path on every call.
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return  # Whatever is missing will be created as a plain directory or file.
        if stat.S_ISLNK(mode) and not current.resolve().is_relative_to(root):
            raise ValueError(f"blob path {path} leads outside {root}")


def _temporary_for(path: Path) -> Path:
    # Process id, thread id and a counter: no two writers alive at once share a name.
    return path.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{next(_sequence)}")


def _probe(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    probe = _temporary_for(root / "probe")
    os.close(os.open(probe, _NEW_FILE, 0o644))
    probe.unlink()


def _read(root: Path, path: Path) -> bytes:
    _refuse_escaping_links(root, path)
    return path.read_bytes()


def _covered(root: Path, directory: Path, stem: str) -> list[Path]:
    """The entries of ``directory`` whose names start with ``stem`` (no temporary files)."""
    _refuse_escaping_links(root, directory)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [directory / n for n in sorted(names) if n.startswith(stem) and not _temporary(n)]


def _temporary(name: str) -> bool:
    return name.startswith(".tmp-")


def _files_under(entries: list[Path]) -> list[Path]:
    """The blob files among ``entries`` and below them; links are never followed."""
    files: list[Path] = []
    for entry in entries:
        if not entry.is_dir() or entry.is_symlink():
            files.append(entry)
            continue
        for parent, _, names in os.walk(entry):
            files += [Path(parent) / name for name in names if not _temporary(name)]
    return files


def _keys_under(root: Path, directory: Path, stem: str) -> list[str]:
    return [f.relative_to(root).as_posix() for f in _files_under(_covered(root, directory, stem))]


def _delete_under(root: Path, directory: Path, stem: str) -> int:
    entries = _covered(root, directory, stem)
    files = _files_under(entries)
    for file in files:
        file.unlink(missing_ok=True)
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            for parent, _, _ in sorted(os.walk(entry), key=lambda w: -len(w[0])):
                # A directory that is not empty holds a write in flight: leave it.
                with contextlib.suppress(OSError):
                    os.rmdir(parent)
    if not stem and directory != root:
        with contextlib.suppress(OSError):
            directory.rmdir()  # the prefix named this directory: empty now, it goes too
    return len(files)


def _unlink(root: Path, path: Path) -> None:
    _refuse_escaping_links(root, path)
    path.unlink(missing_ok=True)


def _write_atomically(root: Path, path: Path, data: bytes) -> None:
    _refuse_escaping_links(root, path)
    # The temporary file sits beside the target so os.replace is a same-filesystem rename.
    temporary = _temporary_for(path)
    try:
        fd = os.open(temporary, _NEW_FILE, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, _NEW_FILE, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
