"""Security headers on every response: a Content-Security-Policy, no framing, no MIME sniffing,
no full referrer to other sites.

The pages load scripts and style sheets only from ``/static`` (no inline ``<script>`` or
``<style>``); inline ``style="..."`` attributes are allowed for the progress bars' widths
(they cannot run code, and images load only from this site).
"""

from __future__ import annotations

from flask import Flask
from werkzeug.wrappers import Response

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def add_security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_headers(app: Flask) -> None:
    """Send :data:`HEADERS` with every response of ``app`` (pages, API, errors, static files)."""
    app.after_request(add_security_headers)
