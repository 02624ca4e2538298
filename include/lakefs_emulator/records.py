"""The emulator's records and rules: objects, commits, repositories and changes as values;
lakeFS's errors (each with its HTTP status); its naming rules and ref syntax; and comparing
trees of objects (two-way diff, three-way merge). Pure: no I/O, no state.

EMULATOR, not lakeFS. An *entry* is one object version (content address, MD5 checksum, size,
mtime, content type, user metadata); its *identity* is (size, checksum, metadata, content
type), as in lakeFS. A *tree* maps paths to entries; its id (:func:`range_id_of`) is what a
commit points at, so commits with equal content share it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "BRANCH_NAME",
    "DEFAULT_CONTENT_TYPE",
    "FIRST_COMMIT_MESSAGE",
    "FULL_COMMIT",
    "HASH_PREFIX",
    "MERGE_STRATEGY_KEY",
    "REF_EXPR",
    "REPO_NAME",
    "TAG_NAME",
    "BadRequest",
    "Change",
    "Commit",
    "Conflict",
    "EmulatorError",
    "Entry",
    "Forbidden",
    "NotFound",
    "PreconditionFailed",
    "Repo",
    "Resolved",
    "now",
    "range_id_of",
    "same",
    "three_way",
    "two_way",
]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
FIRST_COMMIT_MESSAGE = "Repository created"
MERGE_STRATEGY_KEY = ".lakefs.merge.strategy"

# lakeFS's validation rules (pkg/graveler/validate.go).
REPO_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
BRANCH_NAME = re.compile(r"^\w[-\w]*$")
TAG_NAME = re.compile(r"^[^\s~^:?*\[\\]+$")
FULL_COMMIT = re.compile(r"^[0-9a-f]{64}$")
HASH_PREFIX = re.compile(r"^[0-9a-f]{1,63}$")
# A ref expression: a base name followed by modifiers (~N, ^N, @).
REF_EXPR = re.compile(r"^(?P<base>[^~^@$]+)(?P<mods>(?:~\d*|\^\d*|@)*)$")


# --- errors (each carries lakeFS's HTTP status) ---------------------------------------------


class EmulatorError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(EmulatorError):
    status = 400


class Forbidden(EmulatorError):
    status = 403


class NotFound(EmulatorError):
    status = 404


class Conflict(EmulatorError):
    status = 409


class PreconditionFailed(EmulatorError):
    status = 412


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    path: str
    address: str  # sha256 of the bytes: the blob's name
    checksum: str  # MD5 hex, what lakeFS's local blockstore reports as ETag
    size: int
    mtime: int
    content_type: str = DEFAULT_CONTENT_TYPE
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> tuple:
        """What lakeFS compares to decide whether an object changed (catalog.EntryToValue)."""
        return (self.size, self.checksum, tuple(sorted(self.metadata.items())), self.content_type)


@dataclass(frozen=True)
class Commit:
    id: str
    parents: list[str]
    committer: str
    message: str
    creation_date: int
    meta_range_id: str
    metadata: dict[str, str]
    generation: int


@dataclass(frozen=True)
class Repo:
    id: str
    storage_namespace: str
    default_branch: str
    creation_date: int


@dataclass(frozen=True)
class Change:
    type: str  # added | removed | changed | conflict
    path: str
    entry: Entry  # the right-hand entry (the left one for "removed")


@dataclass(frozen=True)
class Resolved:
    commit_id: str
    branch: str | None  # set when reads must include the branch's staging area


def same(a: Entry | None, b: Entry | None) -> bool:
    """Whether two entries (either may be absent) are the same object version."""
    if a is None or b is None:
        return a is b
    return a.identity == b.identity


def range_id_of(tree: Mapping[str, Entry]) -> str:
    """A tree's content address: sha256 over its paths and their entries' identities."""
    h = hashlib.sha256()
    for path in sorted(tree):
        h.update(json.dumps([path, tree[path].identity]).encode())
        h.update(b"\n")
    return h.hexdigest()


def now() -> int:
    return int(time.time())


# --- comparing trees -------------------------------------------------------------------------


def two_way(left: Mapping[str, Entry], right: Mapping[str, Entry]) -> list[Change]:
    """What changes going from `left` to `right`."""
    changes = []
    for path in sorted(set(left) | set(right)):
        lhs, rhs = left.get(path), right.get(path)
        if same(lhs, rhs):
            continue
        if lhs is None:
            changes.append(Change("added", path, rhs))
        elif rhs is None:
            changes.append(Change("removed", path, lhs))
        else:
            changes.append(Change("changed", path, rhs))
    return changes


def three_way(
    dest: Mapping[str, Entry], source: Mapping[str, Entry], base: Mapping[str, Entry]
) -> list[Change]:
    """What merging `source` into `dest` changes on dest, with conflicts (lakeFS compare)."""
    changes = []
    for path in sorted(set(dest) | set(source)):
        d, s, b = dest.get(path), source.get(path), base.get(path)
        if same(d, s) or same(b, s):  # nothing to bring, or only dest changed
            continue
        if same(b, d):  # only the source changed
            kind = "added" if d is None else "removed" if s is None else "changed"
            changes.append(Change(kind, path, d if s is None else s))
        else:
            changes.append(Change("conflict", path, s or d))
    return changes
