"""The API documentation pages: Swagger UI at /docs and ReDoc at /redoc, from vendored files.

FastAPI's own /docs and /redoc load their scripts (and ReDoc its fonts) from CDNs, so they
were blank offline; these pages load nothing but this server's files.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from quarry.apidocs import VENDOR_DIR
from quarry.engine import Engine
from quarry.server.settings import ServeSettings

ASSETS = "/apidocs"


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    openapi_url = api.openapi_url or "/openapi.json"

    @api.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{api.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            # validatorUrl: no badge fetched from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None})

    @api.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url, title=f"{api.title} API",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon-32x32.png", with_google_fonts=False)

    api.mount(ASSETS, StaticFiles(directory=VENDOR_DIR), name="apidocs")
