"""Data versioning in lakeFS: a monthly sample is one commit, and its id is the dataset's
identity. The public API, re-exported from the modules of this package:

- :mod:`~pawpaw.versioning.client`: the lakeFS client (:func:`make_client`), errors explained
  as :class:`VersioningError`, the repository (:func:`ensure_repository`), the layout of main
  and resolving commit ids;
- :mod:`~pawpaw.versioning.commit`: writing a sample (:func:`commit_sample`, its tag
  :func:`sample_tag`, the result :class:`SampleCommit`): run branch, uploads, ``sample.json``,
  metadata, merge and tag;
- :mod:`~pawpaw.versioning.read`: reading it back (:func:`load_split`, :func:`sample_info`,
  :func:`commit_time`) and main's history (:func:`list_commits`, :func:`diff_commits`,
  :func:`summarize_diff`, :class:`CommitInfo`, :class:`DiffEntry`).

Imports go one way: ``commit`` and ``read`` use ``client``, never each other.
"""

from pawpaw.versioning.client import VersioningError, ensure_repository, make_client
from pawpaw.versioning.commit import SampleCommit, commit_sample, sample_tag
from pawpaw.versioning.read import (
    CommitInfo,
    DiffEntry,
    commit_time,
    diff_commits,
    list_commits,
    load_split,
    sample_info,
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
