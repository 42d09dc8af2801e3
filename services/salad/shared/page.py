"""The web page: `GET /` and its assets under `/static/`, shipped in the package (no CDN: works offline)."""

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from salad import __version__

WEB = Path(__file__).parent / "web"
CACHE_ASSETS = "public, max-age=3600"  # their URLs carry the version, so a release is fetched anew
ASSETS = {"app.css": "text/css", "app.js": "text/javascript", "favicon.svg": "image/svg+xml"}

router = APIRouter(include_in_schema=False)


@lru_cache
def index_html() -> str:
    """The page, with asset URLs carrying the version so a new release is not served from a stale cache."""
    return (WEB / "index.html").read_text(encoding="utf-8").replace("{{version}}", __version__)


@router.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    """Order salads and watch them being prepared."""
    return HTMLResponse(index_html(), headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}")
def asset(name: str) -> FileResponse:
    """One of the page's files (a fixed list: nothing else under the package is served)."""
    if name not in ASSETS:
        raise HTTPException(404, detail=f"no asset {name}")
    return FileResponse(WEB / name, media_type=ASSETS[name], headers={"Cache-Control": CACHE_ASSETS})
