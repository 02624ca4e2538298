"""The emulator's state: repositories, commits, branches, tags and staged changes on disk.

EMULATOR, not lakeFS. It keeps lakeFS's model (graveler) in a small SQLite database:

- an *entry* is one object version (content address, MD5 checksum, size, mtime, content type,
  user metadata); its *identity* is (size, checksum, metadata, content type), as in lakeFS;
- a *range* is an immutable, content-addressed set of entries (lakeFS's metarange): a commit
  points at one, and commits with equal content share it;
- a branch is a head commit plus a staging area (entries, or tombstones for deletions);
- commit ids are sha256 of the commit's content, 64 hex characters, as in lakeFS.

Object bytes live under ``blobs/`` named by their sha256, so equal content is stored once.
Every mutation is one SQLite transaction (WAL), and the store is guarded by one lock, so it
is safe under concurrent uploads and survives a restart with everything intact.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "FIRST_COMMIT_MESSAGE",
    "MERGE_STRATEGY_KEY",
    "BadRequest",
    "BlobWriter",
    "Change",
    "Commit",
    "Conflict",
    "EmulatorError",
    "Entry",
    "Forbidden",
    "NotFound",
    "PreconditionFailed",
    "Repo",
    "Store",
]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
FIRST_COMMIT_MESSAGE = "Repository created"
MERGE_STRATEGY_KEY = ".lakefs.merge.strategy"

# lakeFS's validation rules (pkg/graveler/validate.go).
_REPO_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
_BRANCH_NAME = re.compile(r"^\w[-\w]*$")
_TAG_NAME = re.compile(r"^[^\s~^:?*\[\\]+$")
_FULL_COMMIT = re.compile(r"^[0-9a-f]{64}$")
_HASH_PREFIX = re.compile(r"^[0-9a-f]{1,63}$")
# A ref expression: a base name followed by modifiers (~N, ^N, @).
_REF_EXPR = re.compile(r"^(?P<base>[^~^@$]+)(?P<mods>(?:~\d*|\^\d*|@)*)$")
_RANGE_CACHE_SIZE = 8  # ranges are immutable; a few cover the heads in use


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
class _Resolved:
    commit_id: str
    branch: str | None  # set when reads must include the branch's staging area


def _same(a: Entry | None, b: Entry | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.identity == b.identity


def _range_id(tree: Mapping[str, Entry]) -> str:
    h = hashlib.sha256()
    for path in sorted(tree):
        h.update(json.dumps([path, tree[path].identity]).encode())
        h.update(b"\n")
    return h.hexdigest()


def _now() -> int:
    return int(time.time())


_ENTRY_COLUMNS = "path, address, checksum, size, mtime, content_type, metadata"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS repos(
    name TEXT PRIMARY KEY, namespace TEXT NOT NULL, default_branch TEXT NOT NULL,
    created INTEGER NOT NULL);
-- lakeFS refuses a namespace that already held a repository, even a deleted one.
CREATE TABLE IF NOT EXISTS namespaces(namespace TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS commits(
    repo TEXT, id TEXT, parents TEXT NOT NULL, committer TEXT NOT NULL, message TEXT NOT NULL,
    created INTEGER NOT NULL, range_id TEXT NOT NULL, metadata TEXT NOT NULL,
    generation INTEGER NOT NULL, PRIMARY KEY(repo, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ranges(repo TEXT, range_id TEXT, PRIMARY KEY(repo, range_id))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries(
    repo TEXT, range_id TEXT, path TEXT, address TEXT NOT NULL, checksum TEXT NOT NULL,
    size INTEGER NOT NULL, mtime INTEGER NOT NULL, content_type TEXT NOT NULL,
    metadata TEXT NOT NULL, PRIMARY KEY(repo, range_id, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS branches(
    repo TEXT, name TEXT, commit_id TEXT NOT NULL, hidden INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(repo, name)) WITHOUT ROWID;
-- address NULL marks a tombstone (a staged deletion).
CREATE TABLE IF NOT EXISTS staging(
    repo TEXT, branch TEXT, path TEXT, address TEXT, checksum TEXT, size INTEGER,
    mtime INTEGER, content_type TEXT, metadata TEXT, PRIMARY KEY(repo, branch, path))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags(repo TEXT, name TEXT, commit_id TEXT NOT NULL,
    PRIMARY KEY(repo, name)) WITHOUT ROWID;
"""


def _entry(row: tuple) -> Entry:
    path, address, checksum, size, mtime, content_type, metadata = row
    return Entry(path, address, checksum, size, mtime, content_type, json.loads(metadata))


def _entry_values(e: Entry) -> tuple:
    return (
        e.path,
        e.address,
        e.checksum,
        e.size,
        e.mtime,
        e.content_type,
        json.dumps(dict(e.metadata), sort_keys=True),
    )


class BlobWriter:
    """Streams one object's bytes to a temporary file, hashing as it goes; `finish` files it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.root / "tmp", prefix="upload-")
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
        target = self._store.blob_path(address)
        if target.exists():  # same bytes already stored: keep one copy
            self._tmp.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, target)
        return address, self._md5.hexdigest(), self.size

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class Store:
    """All emulator state under one directory (``emulator.db`` + ``blobs/``)."""

    def __init__(self, root: Path, committer: str = "admin") -> None:
        self.root = Path(root)
        self.committer = committer
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        for stale in (self.root / "tmp").iterdir():  # uploads interrupted by a crash
            stale.unlink(missing_ok=True)
        self._lock = threading.RLock()
        # One server per directory is the design; the timeout only rides out a stray reader.
        self._db = sqlite3.connect(self.root / "emulator.db", check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only power loss may drop the last writes.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._ranges: OrderedDict[tuple[str, str], dict[str, Entry]] = OrderedDict()
        self._commits: dict[tuple[str, str], Commit] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- blobs -------------------------------------------------------------------------------

    def blob_path(self, address: str) -> Path:
        return self.root / "blobs" / address[:2] / address

    def blob_writer(self) -> BlobWriter:
        return BlobWriter(self)

    # --- repositories --------------------------------------------------------------------------

    def create_repo(self, name: str, namespace: str, default_branch: str = "main") -> Repo:
        if not _REPO_NAME.match(name):
            raise BadRequest(
                f"repository name {name!r} is invalid (want [a-z0-9][a-z0-9-]{{2,62}})"
            )
        if not _BRANCH_NAME.match(default_branch):
            raise BadRequest(f"default branch name {default_branch!r} is invalid")
        with self._lock, self._db:
            if self._db.execute("SELECT 1 FROM repos WHERE name=?", (name,)).fetchone():
                raise Conflict(f"repository {name!r} already exists")
            if self._db.execute(
                "SELECT 1 FROM namespaces WHERE namespace=?", (namespace.rstrip("/"),)
            ).fetchone():
                raise BadRequest(
                    f"storage namespace {namespace!r} already in use by another repository"
                )
            created = _now()
            self._db.execute(
                "INSERT INTO repos VALUES (?,?,?,?)", (name, namespace, default_branch, created)
            )
            self._db.execute("INSERT INTO namespaces VALUES (?)", (namespace.rstrip("/"),))
            commit = self._add_commit(name, [], FIRST_COMMIT_MESSAGE, {}, {}, created, "")
            self._db.execute(
                "INSERT INTO branches VALUES (?,?,?,0)", (name, default_branch, commit.id)
            )
        return Repo(name, namespace, default_branch, created)

    def get_repo(self, name: str) -> Repo:
        with self._lock:
            row = self._db.execute(
                "SELECT name, namespace, default_branch, created FROM repos WHERE name=?", (name,)
            ).fetchone()
        if row is None:
            raise NotFound(f"repository {name!r} not found")
        return Repo(*row)

    def list_repos(self) -> list[Repo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, namespace, default_branch, created FROM repos ORDER BY name"
            ).fetchall()
        return [Repo(*r) for r in rows]

    def delete_repo(self, name: str) -> None:
        with self._lock, self._db:
            self.get_repo(name)
            self._db.execute("DELETE FROM repos WHERE name=?", (name,))
            for table in ("commits", "ranges", "entries", "branches", "staging", "tags"):
                self._db.execute(f"DELETE FROM {table} WHERE repo=?", (name,))
            self._ranges = OrderedDict((k, v) for k, v in self._ranges.items() if k[0] != name)
            self._commits = {k: v for k, v in self._commits.items() if k[0] != name}

    # --- commits and ranges --------------------------------------------------------------------

    def _write_range(self, repo: str, tree: Mapping[str, Entry]) -> str:
        range_id = _range_id(tree)
        if not self._db.execute(
            "SELECT 1 FROM ranges WHERE repo=? AND range_id=?", (repo, range_id)
        ).fetchone():
            self._db.executemany(
                f"INSERT INTO entries(repo, range_id, {_ENTRY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                ((repo, range_id, *_entry_values(e)) for e in tree.values()),
            )
            self._db.execute("INSERT INTO ranges VALUES (?,?)", (repo, range_id))
        return range_id

    def _tree(self, repo: str, range_id: str) -> dict[str, Entry]:
        """The committed entries of a range (cached: ranges never change). Do not mutate."""
        key = (repo, range_id)
        with self._lock:
            if key in self._ranges:
                self._ranges.move_to_end(key)
                return self._ranges[key]
            rows = self._db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE repo=? AND range_id=? ORDER BY path",
                key,
            ).fetchall()
            tree = {row[0]: _entry(row) for row in rows}
            self._ranges[key] = tree
            if len(self._ranges) > _RANGE_CACHE_SIZE:
                self._ranges.popitem(last=False)
            return tree

    def _add_commit(
        self,
        repo: str,
        parents: list[str],
        message: str,
        metadata: Mapping[str, str],
        tree: Mapping[str, Entry],
        created: int,
        committer: str,
    ) -> Commit:
        range_id = self._write_range(repo, tree)
        generation = 1 + max((self._commit(repo, p).generation for p in parents), default=0)
        body = json.dumps(
            [parents, committer, message, created, range_id, dict(metadata), generation],
            sort_keys=True,
        )
        commit_id = hashlib.sha256(body.encode()).hexdigest()
        commit = Commit(
            commit_id, parents, committer, message, created, range_id, dict(metadata), generation
        )
        self._db.execute(
            "INSERT OR IGNORE INTO commits VALUES (?,?,?,?,?,?,?,?,?)",
            (
                repo,
                commit_id,
                json.dumps(parents),
                committer,
                message,
                created,
                range_id,
                json.dumps(commit.metadata, sort_keys=True),
                generation,
            ),
        )
        return commit

    def _commit(self, repo: str, commit_id: str) -> Commit:
        key = (repo, commit_id)
        with self._lock:
            if key not in self._commits:
                row = self._db.execute(
                    "SELECT id, parents, committer, message, created, range_id, metadata, "
                    "generation FROM commits WHERE repo=? AND id=?",
                    key,
                ).fetchone()
                if row is None:
                    raise NotFound(f"commit {commit_id!r} not found in repository {repo!r}")
                cid, parents, committer, message, created, range_id, metadata, gen = row
                self._commits[key] = Commit(
                    cid,
                    json.loads(parents),
                    committer,
                    message,
                    created,
                    range_id,
                    json.loads(metadata),
                    gen,
                )
            return self._commits[key]

    # --- refs ------------------------------------------------------------------------------------

    def _resolve(self, repo: str, ref: str) -> _Resolved:
        """A ref as lakeFS reads it: full commit id, branch, tag, then unique commit-id prefix."""
        self.get_repo(repo)
        m = _REF_EXPR.match(ref)
        if m is None:
            raise BadRequest(f"invalid ref {ref!r}")
        base, mods = m.group("base"), m.group("mods")
        resolved = self._resolve_base(repo, base)
        if resolved is None:
            raise NotFound(f"ref {ref!r} not found in repository {repo!r}")
        if mods == "@":  # branch@: committed state only
            if resolved.branch is None:
                raise BadRequest(f"invalid ref {ref!r}: '@' applies to branches only")
            return _Resolved(resolved.commit_id, None)
        commit_id = resolved.commit_id
        for mod in re.findall(r"~\d*|\^\d*|@", mods):
            if mod == "@":
                raise BadRequest(f"invalid ref {ref!r}")
            n = int(mod[1:] or 1)
            if mod[0] == "~":
                for _ in range(n):
                    parents = self._commit(repo, commit_id).parents
                    if not parents:
                        raise NotFound(f"ref {ref!r} not found: no parent commit")
                    commit_id = parents[0]
            elif n:
                parents = self._commit(repo, commit_id).parents
                if n > len(parents):
                    raise BadRequest(f"invalid ref {ref!r}: parent {n} out of range")
                commit_id = parents[n - 1]
        if mods:
            return _Resolved(commit_id, None)
        return resolved

    def _resolve_base(self, repo: str, name: str) -> _Resolved | None:
        if (
            _FULL_COMMIT.match(name)
            and self._db.execute(
                "SELECT 1 FROM commits WHERE repo=? AND id=?", (repo, name)
            ).fetchone()
        ):
            return _Resolved(name, None)
        row = self._db.execute(
            "SELECT commit_id FROM branches WHERE repo=? AND name=?", (repo, name)
        ).fetchone()
        if row:
            return _Resolved(row[0], name)
        row = self._db.execute(
            "SELECT commit_id FROM tags WHERE repo=? AND name=?", (repo, name)
        ).fetchone()
        if row:
            return _Resolved(row[0], None)
        if _HASH_PREFIX.match(name):
            # Like lakeFS, an ambiguous prefix resolves to nothing.
            rows = self._db.execute(
                "SELECT id FROM commits WHERE repo=? AND id>=? AND id<? LIMIT 2",
                (repo, name, name + "g"),
            ).fetchall()
            if len(rows) == 1:
                return _Resolved(rows[0][0], None)
        return None

    def resolve_commit(self, repo: str, ref: str) -> Commit:
        with self._lock:
            return self._commit(repo, self._resolve(repo, ref).commit_id)

    def _branch_head(self, repo: str, branch: str) -> str:
        self.get_repo(repo)
        row = self._db.execute(
            "SELECT commit_id FROM branches WHERE repo=? AND name=?", (repo, branch)
        ).fetchone()
        if row is None:
            raise NotFound(f"branch {branch!r} not found in repository {repo!r}")
        return row[0]

    # --- branches ----------------------------------------------------------------------------

    def create_branch(self, repo: str, name: str, source: str, hidden: bool = False) -> str:
        if not _BRANCH_NAME.match(name):
            raise BadRequest(f"branch name {name!r} is invalid (want \\w[-\\w]*)")
        with self._lock, self._db:
            commit_id = self._resolve(repo, source).commit_id  # a branch source: its head only
            if self._db.execute(
                "SELECT 1 FROM branches WHERE repo=? AND name=?", (repo, name)
            ).fetchone():
                raise Conflict(f"branch {name!r} already exists")
            self._db.execute(
                "INSERT INTO branches VALUES (?,?,?,?)", (repo, name, commit_id, int(hidden))
            )
            return commit_id

    def get_branch(self, repo: str, name: str) -> str:
        with self._lock:
            return self._branch_head(repo, name)

    def list_branches(self, repo: str, show_hidden: bool = False) -> list[tuple[str, str]]:
        with self._lock:
            self.get_repo(repo)
            rows = self._db.execute(
                "SELECT name, commit_id FROM branches WHERE repo=? AND (hidden=0 OR ?) "
                "ORDER BY name",
                (repo, int(show_hidden)),
            ).fetchall()
        return [tuple(r) for r in rows]

    def delete_branch(self, repo: str, name: str) -> None:
        with self._lock, self._db:
            self._branch_head(repo, name)
            if self.get_repo(repo).default_branch == name:
                raise Forbidden("cannot delete repository default branch")
            self._db.execute("DELETE FROM branches WHERE repo=? AND name=?", (repo, name))
            self._db.execute("DELETE FROM staging WHERE repo=? AND branch=?", (repo, name))

    def reset_branch(self, repo: str, branch: str, kind: str, path: str | None = None) -> None:
        """Drop uncommitted changes: all ("reset"), one "object", or a "common_prefix"."""
        with self._lock, self._db:
            self._branch_head(repo, branch)
            if kind == "reset":
                self._db.execute("DELETE FROM staging WHERE repo=? AND branch=?", (repo, branch))
            elif kind == "object":
                self._db.execute(
                    "DELETE FROM staging WHERE repo=? AND branch=? AND path=?",
                    (repo, branch, path or ""),
                )
            elif kind == "common_prefix":
                prefix = path or ""
                self._db.execute(
                    "DELETE FROM staging WHERE repo=? AND branch=? AND substr(path,1,?)=?",
                    (repo, branch, len(prefix), prefix),
                )
            else:
                raise BadRequest(f"unknown reset type {kind!r}")

    # --- tags --------------------------------------------------------------------------------

    def create_tag(self, repo: str, name: str, ref: str, force: bool = False) -> str:
        if not _TAG_NAME.match(name) or _FULL_COMMIT.match(name):
            raise BadRequest(f"tag name {name!r} is invalid")
        with self._lock, self._db:
            commit_id = self._resolve(repo, ref).commit_id
            exists = self._db.execute(
                "SELECT 1 FROM tags WHERE repo=? AND name=?", (repo, name)
            ).fetchone()
            if exists and not force:
                raise Conflict(f"tag {name!r} already exists")
            self._db.execute("INSERT OR REPLACE INTO tags VALUES (?,?,?)", (repo, name, commit_id))
            return commit_id

    def get_tag(self, repo: str, name: str) -> str:
        with self._lock:
            self.get_repo(repo)
            row = self._db.execute(
                "SELECT commit_id FROM tags WHERE repo=? AND name=?", (repo, name)
            ).fetchone()
        if row is None:
            raise NotFound(f"tag {name!r} not found in repository {repo!r}")
        return row[0]

    def list_tags(self, repo: str) -> list[tuple[str, str]]:
        with self._lock:
            self.get_repo(repo)
            rows = self._db.execute(
                "SELECT name, commit_id FROM tags WHERE repo=? ORDER BY name", (repo,)
            ).fetchall()
        return [tuple(r) for r in rows]

    def delete_tag(self, repo: str, name: str) -> None:
        with self._lock, self._db:
            self.get_tag(repo, name)
            self._db.execute("DELETE FROM tags WHERE repo=? AND name=?", (repo, name))

    # --- reading objects -----------------------------------------------------------------------

    def _staging(self, repo: str, branch: str) -> dict[str, Entry | None]:
        rows = self._db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM staging WHERE repo=? AND branch=?", (repo, branch)
        ).fetchall()
        return {r[0]: (None if r[1] is None else _entry(r)) for r in rows}

    def _branch_view(self, repo: str, branch: str, head: str) -> dict[str, Entry]:
        tree = dict(self._tree(repo, self._commit(repo, head).meta_range_id))
        for path, entry in self._staging(repo, branch).items():
            if entry is None:
                tree.pop(path, None)
            else:
                tree[path] = entry
        return tree

    def view(self, repo: str, ref: str) -> Mapping[str, Entry]:
        """Path -> entry as `ref` reads: a branch includes its staged changes. Do not mutate."""
        with self._lock:
            r = self._resolve(repo, ref)
            if r.branch is not None:
                return self._branch_view(repo, r.branch, r.commit_id)
            return self._tree(repo, self._commit(repo, r.commit_id).meta_range_id)

    def get_entry(self, repo: str, ref: str, path: str) -> Entry:
        with self._lock:
            r = self._resolve(repo, ref)
            if r.branch is not None:
                row = self._db.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM staging WHERE repo=? AND branch=? AND path=?",
                    (repo, r.branch, path),
                ).fetchone()
                if row is not None:
                    if row[1] is None:
                        raise NotFound(f"object {path!r} not found on {ref!r}")
                    return _entry(row)
            entry = self._tree(repo, self._commit(repo, r.commit_id).meta_range_id).get(path)
        if entry is None:
            raise NotFound(f"object {path!r} not found on {ref!r}")
        return entry

    # --- writing objects -----------------------------------------------------------------------

    def check_writable(self, repo: str, branch: str, path: str, if_none_match: bool) -> None:
        """Fail before an upload streams its body, as lakeFS does."""
        with self._lock:
            self._branch_head(repo, branch)
            if if_none_match:
                self._check_absent(repo, branch, path)

    def _check_absent(self, repo: str, branch: str, path: str) -> None:
        try:
            self.get_entry(repo, branch, path)
        except NotFound:
            return
        raise PreconditionFailed("path already exists")

    def stage(self, repo: str, branch: str, entry: Entry, if_none_match: bool = False) -> Entry:
        if not entry.path:
            raise BadRequest("path is required")
        with self._lock, self._db:
            self._branch_head(repo, branch)
            if if_none_match:  # checked again here: another upload may have won meanwhile
                self._check_absent(repo, branch, entry.path)
            self._db.execute(
                f"INSERT OR REPLACE INTO staging(repo, branch, {_ENTRY_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (repo, branch, *_entry_values(entry)),
            )
        return entry

    def delete_objects(self, repo: str, branch: str, paths: Iterable[str]) -> None:
        """Stage deletions; missing paths are not an error (lakeFS's rule)."""
        with self._lock, self._db:
            head = self._branch_head(repo, branch)
            committed = self._tree(repo, self._commit(repo, head).meta_range_id)
            for path in paths:
                if path in committed:
                    self._db.execute(
                        "INSERT OR REPLACE INTO staging(repo, branch, path) VALUES (?,?,?)",
                        (repo, branch, path),
                    )
                else:
                    self._db.execute(
                        "DELETE FROM staging WHERE repo=? AND branch=? AND path=?",
                        (repo, branch, path),
                    )

    # --- commits -------------------------------------------------------------------------------

    def commit(
        self,
        repo: str,
        branch: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        date: int | None = None,
        allow_empty: bool = False,
    ) -> Commit:
        with self._lock, self._db:
            head = self._branch_head(repo, branch)
            tree = self._branch_view(repo, branch, head)
            if _range_id(tree) == self._commit(repo, head).meta_range_id and not allow_empty:
                raise BadRequest("commit: no changes")
            commit = self._add_commit(
                repo, [head], message, metadata or {}, tree, date or _now(), self.committer
            )
            self._db.execute(
                "UPDATE branches SET commit_id=? WHERE repo=? AND name=?", (commit.id, repo, branch)
            )
            self._db.execute("DELETE FROM staging WHERE repo=? AND branch=?", (repo, branch))
            return commit

    def log(
        self,
        repo: str,
        ref: str,
        first_parent: bool = False,
        paths: Iterable[str] = (),
        prefixes: Iterable[str] = (),
        stop_at: str | None = None,
    ) -> list[Commit]:
        """Commits reachable from `ref`, newest generation first (lakeFS's order)."""
        paths, prefixes = list(paths), list(prefixes)
        with self._lock:
            start = self._commit(repo, self._resolve(repo, ref).commit_id)
            stop = self._resolve(repo, stop_at).commit_id if stop_at else None
            out: list[Commit] = []
            seen = {start.id}
            heap = [(-start.generation, -start.creation_date, start.id)]
            while heap:
                commit = self._commit(repo, heapq.heappop(heap)[2])
                if (not paths and not prefixes) or self._touches(repo, commit, paths, prefixes):
                    out.append(commit)
                if commit.id == stop:
                    break
                for parent_id in commit.parents[:1] if first_parent else commit.parents:
                    if parent_id not in seen:
                        seen.add(parent_id)
                        p = self._commit(repo, parent_id)
                        heapq.heappush(heap, (-p.generation, -p.creation_date, p.id))
            return out

    def _touches(self, repo: str, commit: Commit, paths: list[str], prefixes: list[str]) -> bool:
        tree = self._tree(repo, commit.meta_range_id)
        parent = (
            self._tree(repo, self._commit(repo, commit.parents[0]).meta_range_id)
            if commit.parents
            else {}
        )
        for path in paths:
            if not _same(tree.get(path), parent.get(path)):
                return True
        for prefix in prefixes:
            keys = {k for k in (*tree, *parent) if k.startswith(prefix)}
            if any(not _same(tree.get(k), parent.get(k)) for k in keys):
                return True
        return False

    def merge_base(self, repo: str, a: str, b: str) -> Commit:
        """The common ancestor of two commits with the highest generation."""
        with self._lock:
            ancestors = {a}
            todo = [a]
            while todo:
                for parent in self._commit(repo, todo.pop()).parents:
                    if parent not in ancestors:
                        ancestors.add(parent)
                        todo.append(parent)
            start = self._commit(repo, b)
            heap = [(-start.generation, start.id)]
            seen = {b}
            while heap:
                commit_id = heapq.heappop(heap)[1]
                if commit_id in ancestors:
                    return self._commit(repo, commit_id)
                for parent in self._commit(repo, commit_id).parents:
                    if parent not in seen:
                        seen.add(parent)
                        heapq.heappush(heap, (-self._commit(repo, parent).generation, parent))
        raise NotFound("no merge base")

    # --- diff and merge --------------------------------------------------------------------------

    @staticmethod
    def _two_way(left: Mapping[str, Entry], right: Mapping[str, Entry]) -> list[Change]:
        changes = []
        for path in sorted(set(left) | set(right)):
            lhs, rhs = left.get(path), right.get(path)
            if _same(lhs, rhs):
                continue
            if lhs is None:
                changes.append(Change("added", path, rhs))
            elif rhs is None:
                changes.append(Change("removed", path, lhs))
            else:
                changes.append(Change("changed", path, rhs))
        return changes

    @staticmethod
    def _three_way(
        dest: Mapping[str, Entry], source: Mapping[str, Entry], base: Mapping[str, Entry]
    ) -> list[Change]:
        """What merging `source` into `dest` changes on dest, with conflicts (lakeFS compare)."""
        changes = []
        for path in sorted(set(dest) | set(source)):
            d, s, b = dest.get(path), source.get(path), base.get(path)
            if _same(d, s) or _same(b, s):  # nothing to bring, or only dest changed
                continue
            if _same(b, d):  # only the source changed
                kind = "added" if d is None else "removed" if s is None else "changed"
                changes.append(Change(kind, path, d if s is None else s))
            else:
                changes.append(Change("conflict", path, s or d))
        return changes

    def diff_refs(self, repo: str, left: str, right: str, three_dot: bool = True) -> list[Change]:
        """Two-dot: left's tree against right's. Three-dot: right's changes since the merge base."""
        with self._lock:
            lc, rc = self.resolve_commit(repo, left), self.resolve_commit(repo, right)
            ltree = self._tree(repo, lc.meta_range_id)
            rtree = self._tree(repo, rc.meta_range_id)
            if not three_dot:
                return self._two_way(ltree, rtree)
            base = self.merge_base(repo, rc.id, lc.id)
            return self._three_way(ltree, rtree, self._tree(repo, base.meta_range_id))

    def diff_branch(self, repo: str, branch: str) -> list[Change]:
        """Uncommitted changes: the branch's head commit against the branch with staging."""
        with self._lock:
            head = self._branch_head(repo, branch)
            committed = self._tree(repo, self._commit(repo, head).meta_range_id)
            return self._two_way(committed, self._branch_view(repo, branch, head))

    def merge(
        self,
        repo: str,
        source: str,
        dest: str,
        message: str | None = None,
        metadata: Mapping[str, str] | None = None,
        strategy: str | None = None,
        allow_empty: bool = False,
        squash: bool = False,
    ) -> Commit:
        """lakeFS merge: always a new commit on dest (no fast-forward), 409 on conflicts."""
        if strategy not in (None, "", "dest-wins", "source-wins"):
            raise BadRequest(f"invalid merge strategy {strategy!r}")
        with self._lock, self._db:
            dest_head = self._commit(repo, self._branch_head(repo, dest))
            if self._staging(repo, dest):
                raise BadRequest(f"{dest}: uncommitted changes (dirty branch)")
            src = self.resolve_commit(repo, source)
            base = self.merge_base(repo, src.id, dest_head.id)
            if src.meta_range_id == base.meta_range_id and not allow_empty:
                raise BadRequest("no changes")
            dtree = self._tree(repo, dest_head.meta_range_id)
            stree = self._tree(repo, src.meta_range_id)
            tree = dict(dtree)
            for change in self._three_way(dtree, stree, self._tree(repo, base.meta_range_id)):
                if change.type == "conflict":
                    if not strategy:
                        raise Conflict(f"conflict found: {change.path}")
                    if strategy == "dest-wins":
                        continue
                    winner = stree.get(change.path)
                    if winner is None:
                        tree.pop(change.path, None)
                    else:
                        tree[change.path] = winner
                elif change.type == "removed":
                    tree.pop(change.path, None)
                else:
                    tree[change.path] = change.entry
            meta = dict(metadata or {})
            meta[MERGE_STRATEGY_KEY] = strategy or "default"
            commit = self._add_commit(
                repo,
                [dest_head.id] if squash else [dest_head.id, src.id],
                message or f"Merge '{source}' into '{dest}'",
                meta,
                tree,
                _now(),
                self.committer,
            )
            self._db.execute(
                "UPDATE branches SET commit_id=? WHERE repo=? AND name=?", (commit.id, repo, dest)
            )
            return commit
