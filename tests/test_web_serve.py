"""``python -m cli serve``: wiring to waitress and the one-time print of generated credentials."""

from __future__ import annotations

from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from web import server


def test_serve_prints_url_and_generated_credentials_once(settings, database, monkeypatch):
    calls = []
    monkeypatch.setattr(
        server, "run", lambda app, host, port, threads, **limits: calls.append((app, host, port, threads))
    )
    runner = CliRunner()
    result = runner.invoke(
        cli, ["serve", "--port", "5123", "--threads", "2"], obj=AppContext(settings), catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    ((app, host, port, threads),) = calls
    assert (host, port, threads) == ("127.0.0.1", 5123, 2)
    calls.clear()
    assert (
        runner.invoke(cli, ["serve", "--port", "5124", "--workers", "3"], obj=AppContext(settings)).exit_code == 0
    )
    assert calls[0][2:] == (5124, 3)
    assert "Serving on http://127.0.0.1:5123/" in result.stderr
    password = result.stderr.split("Generated admin password (shown only this once): ")[1].split()[0]
    token = result.stderr.split("Generated API token (shown only this once): ")[1].split()[0]
    credentials = app.extensions["ensemble_cache"].credentials  # the CLI closed the database on exit
    assert credentials.check_password(password) and credentials.check_token(token)
    assert not credentials.check_password(token)

    again = runner.invoke(cli, ["serve"], obj=AppContext(settings), catch_exceptions=False)
    assert again.exit_code == 0
    assert password not in again.stderr and "Generated" not in again.stderr
    assert "Log in with the admin password" in again.stderr
    assert calls[1][1:3] == ("127.0.0.1", 5000)


def test_serve_help_names_waitress():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "--threads" in result.output


def test_waitress_queue_warnings_are_rate_limited():
    import logging

    import web.server  # noqa: F401 - installs the filter

    queue_log = logging.getLogger("waitress.queue")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep()
    queue_log.addHandler(handler)
    try:
        for depth in range(50):
            queue_log.warning("Task queue depth is %d", depth)
    finally:
        queue_log.removeHandler(handler)
    assert len(records) <= 1
