"""The emulator's commit graph in SQLite: the schema, immutable ranges (trees of entries),
commits, ref resolution, branch views (head plus staging) and history walks.

EMULATOR, not lakeFS. It keeps lakeFS's model (graveler) in a small SQLite database:

- a *range* is an immutable, content-addressed set of entries (lakeFS's metarange): a commit
  points at one, and commits with equal content share it;
- a branch is a head commit plus a staging area (entries, or tombstones for deletions);
- commit ids are sha256 of the commit's content, 64 hex characters, as in lakeFS.

:class:`CommitGraph` holds the connection, the lock and the caches; the store
(:mod:`lakefs_emulator.store`) builds lakeFS's operations on it. Every mutation is one SQLite
transaction (WAL), under one lock.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

from lakefs_emulator.records import (
    FULL_COMMIT,
    HASH_PREFIX,
    REF_EXPR,
    BadRequest,
    Commit,
    Entry,
    NotFound,
    Repo,
    Resolved,
    range_id_of,
    same,
)

__all__ = ["ENTRY_COLUMNS", "SCHEMA", "CommitGraph", "entry_from_row", "entry_values"]

_RANGE_CACHE_SIZE = 8  # ranges are immutable; a few cover the heads in use

ENTRY_COLUMNS = "path, address, checksum, size, mtime, content_type, metadata"

SCHEMA = """
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


def entry_from_row(row: tuple) -> Entry:
    path, address, checksum, size, mtime, content_type, metadata = row
    return Entry(path, address, checksum, size, mtime, content_type, json.loads(metadata))


def entry_values(e: Entry) -> tuple:
    return (
        e.path,
        e.address,
        e.checksum,
        e.size,
        e.mtime,
        e.content_type,
        json.dumps(dict(e.metadata), sort_keys=True),
    )


class CommitGraph:
    """Repositories' commits, ranges, branches and tags in one SQLite database."""

    def __init__(self, db_path: Path) -> None:
        self._lock = threading.RLock()
        # One server per directory is the design; the timeout only rides out a stray reader.
        self._db = sqlite3.connect(db_path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only power loss may drop the last writes.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._ranges: OrderedDict[tuple[str, str], dict[str, Entry]] = OrderedDict()
        self._commits: dict[tuple[str, str], Commit] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get_repo(self, name: str) -> Repo:
        with self._lock:
            row = self._db.execute(
                "SELECT name, namespace, default_branch, created FROM repos WHERE name=?", (name,)
            ).fetchone()
        if row is None:
            raise NotFound(f"repository {name!r} not found")
        return Repo(*row)

    # --- commits and ranges --------------------------------------------------------------------

    def _write_range(self, repo: str, tree: Mapping[str, Entry]) -> str:
        range_id = range_id_of(tree)
        if not self._db.execute(
            "SELECT 1 FROM ranges WHERE repo=? AND range_id=?", (repo, range_id)
        ).fetchone():
            self._db.executemany(
                f"INSERT INTO entries(repo, range_id, {ENTRY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                ((repo, range_id, *entry_values(e)) for e in tree.values()),
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
                f"SELECT {ENTRY_COLUMNS} FROM entries WHERE repo=? AND range_id=? ORDER BY path",
                key,
            ).fetchall()
            tree = {row[0]: entry_from_row(row) for row in rows}
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

    def _resolve(self, repo: str, ref: str) -> Resolved:
        """A ref as lakeFS reads it: full commit id, branch, tag, then unique commit-id prefix."""
        self.get_repo(repo)
        m = REF_EXPR.match(ref)
        if m is None:
            raise BadRequest(f"invalid ref {ref!r}")
        base, mods = m.group("base"), m.group("mods")
        resolved = self._resolve_base(repo, base)
        if resolved is None:
            raise NotFound(f"ref {ref!r} not found in repository {repo!r}")
        if mods == "@":  # branch@: committed state only
            if resolved.branch is None:
                raise BadRequest(f"invalid ref {ref!r}: '@' applies to branches only")
            return Resolved(resolved.commit_id, None)
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
            return Resolved(commit_id, None)
        return resolved

    def _resolve_base(self, repo: str, name: str) -> Resolved | None:
        if (
            FULL_COMMIT.match(name)
            and self._db.execute(
                "SELECT 1 FROM commits WHERE repo=? AND id=?", (repo, name)
            ).fetchone()
        ):
            return Resolved(name, None)
        row = self._db.execute(
            "SELECT commit_id FROM branches WHERE repo=? AND name=?", (repo, name)
        ).fetchone()
        if row:
            return Resolved(row[0], name)
        row = self._db.execute(
            "SELECT commit_id FROM tags WHERE repo=? AND name=?", (repo, name)
        ).fetchone()
        if row:
            return Resolved(row[0], None)
        if HASH_PREFIX.match(name):
            # Like lakeFS, an ambiguous prefix resolves to nothing.
            rows = self._db.execute(
                "SELECT id FROM commits WHERE repo=? AND id>=? AND id<? LIMIT 2",
                (repo, name, name + "g"),
            ).fetchall()
            if len(rows) == 1:
                return Resolved(rows[0][0], None)
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

    # --- branch views ---------------------------------------------------------------------------

    def _staging(self, repo: str, branch: str) -> dict[str, Entry | None]:
        rows = self._db.execute(
            f"SELECT {ENTRY_COLUMNS} FROM staging WHERE repo=? AND branch=?", (repo, branch)
        ).fetchall()
        return {r[0]: (None if r[1] is None else entry_from_row(r)) for r in rows}

    def _branch_view(self, repo: str, branch: str, head: str) -> dict[str, Entry]:
        tree = dict(self._tree(repo, self._commit(repo, head).meta_range_id))
        for path, entry in self._staging(repo, branch).items():
            if entry is None:
                tree.pop(path, None)
            else:
                tree[path] = entry
        return tree

    # --- history --------------------------------------------------------------------------------

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
            if not same(tree.get(path), parent.get(path)):
                return True
        for prefix in prefixes:
            keys = {k for k in (*tree, *parent) if k.startswith(prefix)}
            if any(not same(tree.get(k), parent.get(k)) for k in keys):
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
