"""The web app: static files (HTML, CSS, vanilla JS) shipped in ``ezaudio/serve/static``."""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

# The page loads nothing from elsewhere and runs no inline script.
PAGE_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: data:; "
        b"style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class PageFiles(StaticFiles):
    """``StaticFiles`` (``index.html`` at ``/``) that adds the page's security headers."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC, html=True)

    async def __call__(self, scope, receive, send) -> None:
        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *PAGE_HEADERS]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)
