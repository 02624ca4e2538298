"""The emulator's state: lakeFS's operations on repositories, branches, tags, objects,
commits, diffs and merges, over the commit graph and the blobs on disk.

EMULATOR, not lakeFS. All state lives under one directory: ``emulator.db`` (the SQLite commit
graph, :mod:`lakefs_emulator.graph`) and ``blobs/`` (object bytes named by their sha256,
:mod:`lakefs_emulator.blobs`). Every mutation is one SQLite transaction (WAL), and the store is
guarded by one lock, so it is safe under concurrent uploads and survives a restart with
everything intact. Records and errors are in :mod:`lakefs_emulator.records`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

from lakefs_emulator.blobs import BlobWriter
from lakefs_emulator.blobs import blob_path as _blob_path
from lakefs_emulator.graph import ENTRY_COLUMNS, CommitGraph, entry_from_row, entry_values
from lakefs_emulator.records import (
    BRANCH_NAME,
    FIRST_COMMIT_MESSAGE,
    FULL_COMMIT,
    MERGE_STRATEGY_KEY,
    REPO_NAME,
    TAG_NAME,
    BadRequest,
    Change,
    Commit,
    Conflict,
    Entry,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Repo,
    now,
    range_id_of,
    three_way,
    two_way,
)

__all__ = ["Store"]


class Store(CommitGraph):
    """All emulator state under one directory (``emulator.db`` + ``blobs/``)."""

    def __init__(self, root: Path, committer: str = "admin") -> None:
        self.root = Path(root)
        self.committer = committer
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        for stale in (self.root / "tmp").iterdir():  # uploads interrupted by a crash
            stale.unlink(missing_ok=True)
        super().__init__(self.root / "emulator.db")

    # --- blobs -------------------------------------------------------------------------------

    def blob_path(self, address: str) -> Path:
        return _blob_path(self.root, address)

    def blob_writer(self) -> BlobWriter:
        return BlobWriter(self.root)

    # --- repositories --------------------------------------------------------------------------

    def create_repo(self, name: str, namespace: str, default_branch: str = "main") -> Repo:
        if not REPO_NAME.match(name):
            raise BadRequest(
                f"repository name {name!r} is invalid (want [a-z0-9][a-z0-9-]{{2,62}})"
            )
        if not BRANCH_NAME.match(default_branch):
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
            created = now()
            self._db.execute(
                "INSERT INTO repos VALUES (?,?,?,?)", (name, namespace, default_branch, created)
            )
            self._db.execute("INSERT INTO namespaces VALUES (?)", (namespace.rstrip("/"),))
            commit = self._add_commit(name, [], FIRST_COMMIT_MESSAGE, {}, {}, created, "")
            self._db.execute(
                "INSERT INTO branches VALUES (?,?,?,0)", (name, default_branch, commit.id)
            )
        return Repo(name, namespace, default_branch, created)

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

    # --- branches ----------------------------------------------------------------------------

    def create_branch(self, repo: str, name: str, source: str, hidden: bool = False) -> str:
        if not BRANCH_NAME.match(name):
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
        if not TAG_NAME.match(name) or FULL_COMMIT.match(name):
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

    # --- reading objects ------------------------------------------------------------------------

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
                    f"SELECT {ENTRY_COLUMNS} FROM staging WHERE repo=? AND branch=? AND path=?",
                    (repo, r.branch, path),
                ).fetchone()
                if row is not None:
                    if row[1] is None:
                        raise NotFound(f"object {path!r} not found on {ref!r}")
                    return entry_from_row(row)
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
                f"INSERT OR REPLACE INTO staging(repo, branch, {ENTRY_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (repo, branch, *entry_values(entry)),
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

    # --- commits --------------------------------------------------------------------------------

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
            if range_id_of(tree) == self._commit(repo, head).meta_range_id and not allow_empty:
                raise BadRequest("commit: no changes")
            commit = self._add_commit(
                repo, [head], message, metadata or {}, tree, date or now(), self.committer
            )
            self._db.execute(
                "UPDATE branches SET commit_id=? WHERE repo=? AND name=?", (commit.id, repo, branch)
            )
            self._db.execute("DELETE FROM staging WHERE repo=? AND branch=?", (repo, branch))
            return commit

    # --- diff and merge -------------------------------------------------------------------------

    def diff_refs(self, repo: str, left: str, right: str, three_dot: bool = True) -> list[Change]:
        """Two-dot: left's tree against right's. Three-dot: right's changes since the merge base."""
        with self._lock:
            lc, rc = self.resolve_commit(repo, left), self.resolve_commit(repo, right)
            ltree = self._tree(repo, lc.meta_range_id)
            rtree = self._tree(repo, rc.meta_range_id)
            if not three_dot:
                return two_way(ltree, rtree)
            base = self.merge_base(repo, rc.id, lc.id)
            return three_way(ltree, rtree, self._tree(repo, base.meta_range_id))

    def diff_branch(self, repo: str, branch: str) -> list[Change]:
        """Uncommitted changes: the branch's head commit against the branch with staging."""
        with self._lock:
            head = self._branch_head(repo, branch)
            committed = self._tree(repo, self._commit(repo, head).meta_range_id)
            return two_way(committed, self._branch_view(repo, branch, head))

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
            for change in three_way(dtree, stree, self._tree(repo, base.meta_range_id)):
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
                now(),
                self.committer,
            )
            self._db.execute(
                "UPDATE branches SET commit_id=? WHERE repo=? AND name=?", (commit.id, repo, dest)
            )
            return commit
