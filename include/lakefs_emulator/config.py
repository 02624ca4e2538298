"""The emulator's server-level endpoints: health, configuration (version, storage), setup
state and the current user. The version string, ``pawpaw-lakefs-emulator-...``, says what it is.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lakefs_emulator.web import error, store_of

__all__ = [
    "EMULATOR_VERSION",
    "current_user",
    "get_config",
    "get_storage_config",
    "get_version",
    "healthcheck",
    "setup",
    "setup_state",
    "storage_config",
    "version_config",
]

EMULATOR_VERSION = "pawpaw-lakefs-emulator-0.1.0"


async def healthcheck(request: Request) -> Response:
    return Response(status_code=204)


def storage_config() -> dict[str, Any]:
    return {
        "blockstore_type": "local",
        "blockstore_namespace_example": "local://example-bucket/",
        "blockstore_namespace_ValidityRegex": "^local://",
        "default_namespace_prefix": "",
        "pre_sign_support": False,
        "pre_sign_support_ui": False,
        "import_support": False,
        "import_validity_regex": "^local://",
        "pre_sign_multipart_upload": False,
        "blockstore_id": "",
        "blockstore_description": "pawpaw lakeFS emulator: local files",
    }


def version_config() -> dict[str, Any]:
    return {
        "version": EMULATOR_VERSION,
        "version_context": "emulator",
        "upgrade_recommended": False,
    }


async def get_config(request: Request) -> Response:
    return JSONResponse(
        {
            "version_config": version_config(),
            "storage_config": storage_config(),
            "capabilities_config": {},
        }
    )


async def get_version(request: Request) -> Response:
    return JSONResponse(version_config())


async def get_storage_config(request: Request) -> Response:
    return JSONResponse(storage_config())


async def setup_state(request: Request) -> Response:
    # The one user exists from the start: the installation is always set up.
    return JSONResponse({"state": "initialized", "comm_prefs_missing": False})


async def setup(request: Request) -> Response:
    return error(409, "lakeFS already initialized (emulator: credentials are fixed at start)")


async def current_user(request: Request) -> Response:
    user = {"id": store_of(request).committer, "creation_date": request.app.state.started}
    return JSONResponse({"user": user})
