"""Reading samples back from lakeFS: a split's rows and images, the sample's description, and
main's history and diffs. Every read names an explicit commit, so the data cannot change.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import pandas as pd

from pawpaw.config import Settings
from pawpaw.data.labeled import LabeledImages
from pawpaw.schema import COLUMNS, FLAGS, ID, SPLITS, TARGET
from pawpaw.synth.truth import pool_noise_floor
from pawpaw.versioning.client import (
    IMAGES,
    KIND_SAMPLE,
    LIST_PAGE,
    SAMPLE_JSON,
    SPLITS_DIR,
    SYNTH_JSON,
    VersioningError,
    explained,
    listing,
    make_client,
    open_repository,
    resolve_commit,
)

if TYPE_CHECKING:  # the SDK is imported lazily: `pawpaw --help` should not pay for it
    import lakefs

__all__ = [
    "CommitInfo",
    "DiffEntry",
    "commit_time",
    "diff_commits",
    "list_commits",
    "load_split",
    "sample_info",
    "summarize_diff",
]


@dataclass(frozen=True)
class CommitInfo:
    id: str
    message: str
    metadata: dict[str, str]
    created: datetime  # UTC
    parents: tuple[str, ...] = ()

    @property
    def key(self) -> str | None:
        return self.metadata.get("key")


@dataclass(frozen=True)
class DiffEntry:
    path: str
    type: str  # "added" | "removed" | "changed" (as seen going from the first ref to the second)
    size_bytes: int | None = None


def _read(ref: lakefs.Reference, path: str) -> bytes:
    return ref.object(path).reader(mode="rb", pre_sign=False).read()


def _parse_split(data: bytes, where: str) -> pd.DataFrame:
    frame = pd.read_csv(io.BytesIO(data), dtype={ID: str})
    if tuple(frame.columns) != COLUMNS:
        raise VersioningError(f"{where}: columns {list(frame.columns)} are not {list(COLUMNS)}")
    return frame.astype({**dict.fromkeys(FLAGS, "int64"), TARGET: "int64"})


def load_split(
    settings: Settings, commit_id: str, split: str, *, client: lakefs.Client | None = None
) -> LabeledImages:
    """Rows and images of one split exactly as committed at ``commit_id`` (a commit, not a branch).

    ``content_keys`` holds each image's lakeFS checksum (from one listing of ``images/``), so a
    cache keyed by it can skip downloading images it has already seen.
    """
    if split not in SPLITS:
        raise VersioningError(f"unknown split {split!r}; splits are {list(SPLITS)}")
    client = client or make_client(settings)
    repo = open_repository(client, settings)
    commit = resolve_commit(repo, settings, commit_id)
    ref = repo.commit(commit.id)
    where = f"lakefs://{settings.lakefs_repo}/{commit.id}/{SPLITS_DIR}{split}.csv"
    with explained(settings, f"reading {where}"):
        frame = _parse_split(_read(ref, f"{SPLITS_DIR}{split}.csv"), where)
    with explained(settings, f"listing {IMAGES} at commit {commit.id}"):
        images = listing(ref, IMAGES)
    by_id = {PurePosixPath(p).stem: (p, checksum) for p, checksum in images.items()}
    missing = [i for i in frame[ID] if i not in by_id]
    if missing:
        raise VersioningError(
            f"{where}: {len(missing)} Id(s) have no image under {IMAGES} at commit {commit.id}, "
            f"e.g. {missing[0]!r}"
        )
    paths = {i: by_id[i][0] for i in frame[ID]}

    def load(image_id: str) -> bytes:
        if image_id not in paths:
            raise KeyError(f"Id {image_id!r} is not in split {split!r} of commit {commit.id}")
        with explained(settings, f"reading {paths[image_id]} at commit {commit.id}"):
            return _read(ref, paths[image_id])

    return LabeledImages(
        frame=frame,
        load=load,
        content_keys={i: by_id[i][1] for i in frame[ID]},
        source=f"lakefs://{settings.lakefs_repo}/{commit.id}/{split}",
    )


def sample_info(
    settings: Settings, commit_id: str, *, client: lakefs.Client | None = None
) -> dict[str, Any]:
    """``sample.json`` of the commit, plus ``commit_id`` and the synthetic pool's description."""
    from lakefs.exceptions import NotFoundException

    client = client or make_client(settings)
    repo = open_repository(client, settings)
    commit = resolve_commit(repo, settings, commit_id)
    ref = repo.commit(commit.id)
    with explained(settings, f"reading {SAMPLE_JSON} at commit {commit.id}"):
        info = json.loads(_read(ref, SAMPLE_JSON))
        try:
            synth = json.loads(_read(ref, SYNTH_JSON))
        except NotFoundException:
            synth = None
    info["commit_id"] = commit.id
    if synth is not None:
        info["synth"] = synth
        info.setdefault("noise_floor", pool_noise_floor(synth))
    return info


def commit_time(
    settings: Settings, commit_id: str, *, client: lakefs.Client | None = None
) -> datetime:
    """When the commit was made (UTC)."""
    client = client or make_client(settings)
    commit = resolve_commit(open_repository(client, settings), settings, commit_id)
    return datetime.fromtimestamp(commit.creation_date, tz=UTC)


def _info(c: Any) -> CommitInfo:
    return CommitInfo(
        id=c.id,
        message=c.message,
        metadata=dict(c.metadata or {}),
        created=datetime.fromtimestamp(c.creation_date, tz=UTC),
        parents=tuple(c.parents or ()),
    )


def list_commits(
    settings: Settings,
    *,
    limit: int = 50,
    samples_only: bool = True,
    client: lakefs.Client | None = None,
) -> list[CommitInfo]:
    """Main's history, newest first: one commit per sample (``samples_only``) or every commit."""
    client = client or make_client(settings)
    branch = open_repository(client, settings).branch(settings.lakefs_branch)
    out: list[CommitInfo] = []
    with explained(settings, f"reading the history of branch {settings.lakefs_branch!r}"):
        # first_parent: the run branches' own commits are not main's story.
        for c in branch.log(first_parent=True, amount=min(max(limit, 1), 1000)):
            if samples_only and (c.metadata or {}).get("kind") != KIND_SAMPLE:
                continue
            out.append(_info(c))
            if len(out) >= limit:
                break
    return out


def diff_commits(
    settings: Settings, a: str, b: str, *, client: lakefs.Client | None = None
) -> list[DiffEntry]:
    """Objects added, removed or changed going from ref ``a`` to ref ``b``."""
    client = client or make_client(settings)
    repo = open_repository(client, settings)
    for ref in (a, b):
        with explained(settings, f"reading commit {ref!r}"):
            repo.ref(ref).get_commit()
    with explained(settings, f"diffing {a!r} against {b!r}"):
        return [
            DiffEntry(path=d.path, type=d.type, size_bytes=d.size_bytes)
            for d in repo.ref(a).diff(b, amount=LIST_PAGE)
            if d.path_type == "object"
        ]


def summarize_diff(entries: list[DiffEntry]) -> dict[str, dict[str, int]]:
    """Counts per top-level prefix (``images/``, ``splits/``, ...) and change type."""
    counts: dict[str, Counter[str]] = {}
    for e in entries:
        head, sep, _ = e.path.partition("/")
        counts.setdefault(head + sep, Counter())[e.type] += 1
    return {
        prefix: {t: c[t] for t in ("added", "removed", "changed")}
        for prefix, c in sorted(counts.items())
    }
