"""A lakeFS-API EMULATOR for development and tests. It is not lakeFS.

No lakeFS binary exists on our machines, so the project ships this: a real HTTP server that
speaks lakeFS's REST API (``/api/v1``, HTTP basic auth) for every call our code makes through
the official ``lakefs`` and ``lakefs_sdk`` clients, with lakeFS's semantics (commits as
content-addressed ids, branches with staging, three-way merge without fast-forward, refs by
branch / tag / full or abbreviated commit id) and state on local disk.
Its version string, ``pawpaw-lakefs-emulator-...`` (``GET /api/v1/config``), says what it is.
Production runs a real lakeFS; `tests/integration/test_lakefs_contract.py` runs against both.

Start it with ``pawpaw lakefs-emulator`` or embed it with :class:`EmulatorServer`.

Modules, imports one way (each uses only those above it):

- ``records``: objects, commits and changes as values, lakeFS's errors and naming rules, and
  tree comparison (two-way diff, three-way merge);
- ``blobs``: object bytes on disk, by content address;
- ``graph``: the SQLite commit graph (ranges, commits, refs, branch views, log, merge base);
- ``store``: :class:`Store`, lakeFS's operations (repositories, branches, tags, objects,
  commit, diff, merge) over the graph and the blobs;
- ``web``: HTTP request/response helpers and JSON shapes;
- ``config``, ``repositories``, ``objects``, ``commits``: the endpoint handlers per resource;
- ``app``: authentication, the route table and :func:`create_app`;
- ``server``: :class:`EmulatorServer` (embedded) and :func:`serve` (the CLI).
"""

from lakefs_emulator.app import create_app
from lakefs_emulator.config import EMULATOR_VERSION
from lakefs_emulator.server import EmulatorServer, serve
from lakefs_emulator.store import Store

__all__ = ["EMULATOR_VERSION", "EmulatorServer", "Store", "create_app", "serve"]
