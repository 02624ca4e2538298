"""The volunteer's page: upload a pet photo, see its Pawpularity score and how to improve it.

A small Starlette app mounted at ``/`` by the service (``@bentoml.asgi_app``). GET shows the
form; POST scores the upload through the running service instance
(``bentoml.get_current_service().assess``) and renders the result under the form. A bad upload
gets the form back with the reason and HTTP 400; nothing about it reaches the model.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import bentoml
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from uploads import MAX_IMAGE_BYTES, InvalidImage, check_image

__all__ = ["app"]

_FIELD = "photo"
_PREVIEW_SIDE = 360

_SEVERITY_LABEL = {"warning": "Fix this", "tip": "Tip", "info": ""}

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pawpularity: how appealing is this pet photo?</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto;
         padding: 0 1rem; color: #222; line-height: 1.45; }}
  h1 {{ font-size: 1.6rem; margin-bottom: .2rem; }}
  form {{ border: 2px dashed #bbb; border-radius: 12px; padding: 1.2rem; margin: 1rem 0; }}
  button {{ font-size: 1rem; padding: .5rem 1.2rem; border-radius: 8px; border: 0;
           background: #2f6fde; color: white; cursor: pointer; }}
  .error {{ background: #fde8e8; border-left: 4px solid #d33; padding: .7rem 1rem; }}
  .result {{ display: flex; gap: 1.2rem; align-items: flex-start; flex-wrap: wrap; }}
  .result img {{ max-width: 100%; border-radius: 8px; }}
  .score {{ font-size: 3rem; font-weight: 700; }}
  .bar {{ background: #eee; border-radius: 6px; height: 10px; width: 14rem; }}
  .bar > div {{ background: #2f9e44; border-radius: 6px; height: 10px; }}
  li {{ margin: .5rem 0; }}
  .warning {{ color: #b3261e; font-weight: 600; }}
  .tip {{ color: #8a5a00; font-weight: 600; }}
  footer {{ color: #777; font-size: .85rem; margin-top: 2rem; }}
</style>
</head>
<body>
<h1>🐾 Pawpularity</h1>
<p>Upload a photo of a shelter pet to see how appealing it is to adopters (1-100) and get
tips for a better shot.</p>
{error}
<form method="post" action="" enctype="multipart/form-data">
  <input type="file" name="{field}" accept="image/*" required>
  <button type="submit">Score this photo</button>
</form>
{result}
<footer>JPEG, PNG or WebP, up to {max_mb} MB. Scores come from the current champion model.
API: <code>POST /predict</code> (batch scores), <code>POST /advise</code> (score + advice).</footer>
</body>
</html>
"""


def render(*, error: str = "", result: dict[str, Any] | None = None, preview: str = "") -> str:
    """The page: the form, optionally an error and a scored result (all text escaped)."""
    error_html = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return _TEMPLATE.format(
        error=error_html,
        field=_FIELD,
        result=_result_html(result, preview) if result is not None else "",
        max_mb=MAX_IMAGE_BYTES // 2**20,
    )


def _result_html(result: dict[str, Any], preview: str) -> str:
    score = float(result["score"])
    items = []
    for item in result["advice"]:
        label = _SEVERITY_LABEL.get(item["severity"], "")
        tag = f'<span class="{html.escape(item["severity"])}">{label}:</span> ' if label else ""
        items.append(f"<li>{tag}{html.escape(item['message'])}</li>")
    img = f'<img src="data:image/jpeg;base64,{preview}" alt="your photo">' if preview else ""
    width = max(1.0, min(100.0, score))
    return (
        '<section class="result" aria-live="polite">'
        f"<div>{img}</div>"
        f'<div><div>Pawpularity</div><div class="score" data-score="{score:.1f}">{score:.0f}'
        "<small>/100</small></div>"
        f'<div class="bar"><div style="width:{width:.0f}%"></div></div></div>'
        "</section>"
        f'<h2>How to make it even better</h2><ul class="advice">{"".join(items)}</ul>'
    )


def _preview(data: bytes) -> str:
    """A small JPEG of the upload as base64, so the result shows which photo was scored."""
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        img.thumbnail((_PREVIEW_SIDE, _PREVIEW_SIDE))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


async def _form(request: Request) -> HTMLResponse:
    return HTMLResponse(render())


async def _upload(request: Request) -> HTMLResponse:
    try:
        form = await request.form(max_files=1, max_fields=4)
    except Exception as exc:  # malformed multipart bodies: Starlette raises several kinds
        return HTMLResponse(render(error=f"Could not read the upload: {exc}"), status_code=400)
    upload = form.get(_FIELD)
    if not isinstance(upload, UploadFile):
        return HTMLResponse(
            render(error="No photo received: choose an image file and press the button."),
            status_code=400,
        )
    data = await upload.read()
    await form.close()
    try:
        check_image(data)
    except InvalidImage as exc:
        name = upload.filename or "the upload"
        return HTMLResponse(render(error=f"{name}: {exc}"), status_code=400)
    service = bentoml.get_current_service()
    result = (await run_in_threadpool(service.assess, data)).model_dump()
    preview = await run_in_threadpool(_preview, data)
    return HTMLResponse(render(result=result, preview=preview))


app = Starlette(routes=[Route("/", _form, methods=["GET"]), Route("/", _upload, methods=["POST"])])
