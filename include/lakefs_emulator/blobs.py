"""Object bytes on disk: ``blobs/<aa>/<sha256>`` under the store's folder, so equal content is
stored once; an upload streams to ``tmp/`` and is moved to its content address when complete.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

__all__ = ["BlobWriter", "blob_path"]


def blob_path(root: Path, address: str) -> Path:
    """Where the bytes with this sha256 (``address``) live under the store's ``root``."""
    return root / "blobs" / address[:2] / address


class BlobWriter:
    """Streams one object's bytes to a temporary file, hashing as it goes; `finish` files it."""

    def __init__(self, root: Path) -> None:
        self._root = root
        fd, name = tempfile.mkstemp(dir=root / "tmp", prefix="upload-")
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._md5 = hashlib.md5()
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._md5.update(chunk)
        self._sha.update(chunk)
        self.size += len(chunk)

    def finish(self) -> tuple[str, str, int]:
        """Move the bytes to their content address; returns (address, md5 hex, size)."""
        self._file.close()
        address = self._sha.hexdigest()
        target = blob_path(self._root, address)
        if target.exists():  # same bytes already stored: keep one copy
            self._tmp.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, target)
        return address, self._md5.hexdigest(), self.size

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)
