"""A lakeFS-API EMULATOR for development and tests. It is not lakeFS.

No lakeFS binary exists on our machines, so the project ships this: a real HTTP server that
speaks lakeFS's REST API (``/api/v1``, HTTP basic auth) for every call our code makes through
the official ``lakefs`` and ``lakefs_sdk`` clients, with lakeFS's semantics (commits as
content-addressed ids, branches with staging, three-way merge without fast-forward, refs by
branch / tag / full or abbreviated commit id) and state on local disk.
Its version string, ``pawpaw-lakefs-emulator-...`` (``GET /api/v1/config``), says what it is.
Production runs a real lakeFS; `tests/integration/test_lakefs_contract.py` runs against both.

Start it with ``pawpaw lakefs-emulator`` or embed it with :class:`EmulatorServer`.
"""

from lakefs_emulator.app import EMULATOR_VERSION, create_app
from lakefs_emulator.server import EmulatorServer, serve
from lakefs_emulator.store import Store

__all__ = ["EMULATOR_VERSION", "EmulatorServer", "Store", "create_app", "serve"]
