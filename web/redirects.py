"""Where a form may send the browser back to: same-site relative paths only (no open redirects)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


def is_same_site_path(target: str | None) -> bool:
    """``/path?query`` on this site. Refused: other sites (``//host``, ``https://``), backslashes,
    whitespace and control characters anywhere (browsers drop a tab or newline, so ``/\\t/evil`` would
    become ``//evil``), and the same tricks percent-encoded."""
    if not target or not target.startswith("/"):
        return False
    for text in (target, unquote(target)):
        if "\\" in text or any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
            return False
        if text.startswith("//"):
            return False
        parts = urlsplit(text)
        if parts.scheme or parts.netloc:
            return False
    return True


def safe_path(target: str | None, default: str) -> str:
    """``target`` when :func:`is_same_site_path`, else ``default``."""
    return target if target is not None and is_same_site_path(target) else default
