"""Data versioning in lakeFS: a monthly sample is one commit, and its id is the dataset's
identity. Public API re-exported from the modules of this package."""

from pawpaw.versioning.commit import (
    CommitInfo,
    DiffEntry,
    SampleCommit,
    VersioningError,
    commit_sample,
    commit_time,
    diff_commits,
    ensure_repository,
    list_commits,
    load_split,
    make_client,
    sample_info,
    sample_tag,
    summarize_diff,
)

__all__ = [
    "CommitInfo",
    "DiffEntry",
    "SampleCommit",
    "VersioningError",
    "commit_sample",
    "commit_time",
    "diff_commits",
    "ensure_repository",
    "list_commits",
    "load_split",
    "make_client",
    "sample_info",
    "sample_tag",
    "summarize_diff",
]
