"""What every command shares: the lazily opened database, output in human or JSON form, errors.

Conventions: results go to stdout (JSON with ``--json``, a table otherwise);
progress and errors go to stderr. Exit codes: 0 success, 1 the operation
failed, 2 bad input (usage, validation, unknown names).
"""
from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any, Callable, Iterable, Sequence

import click
from pymongo.errors import ConnectionFailure
from rich.console import Console
from rich.table import Table

from models.errors import (
    ConflictError,
    DataError,
    DatabaseUnavailableError,
    NotFoundError,
    ServiceError,
    ValidationError,
)
from models.jsonable import to_json
from models.settings import Settings, get_settings
from models.store.db import Database, safe_uri

USAGE_ERRORS = (ValidationError, NotFoundError, ConflictError, DataError)  # bad input: exit 2

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, width=200 if not sys.stdout.isatty() else None)


class AppContext:
    """Carried on ``click.Context.obj``."""

    def __init__(self, settings: Settings | None = None, debug: bool = False) -> None:
        self.settings = settings or get_settings()
        self.debug = debug
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database.connect(self.settings)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


pass_app = click.make_pass_decorator(AppContext, ensure=True)


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(f)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(to_json(data) if isinstance(data, dict) else
                          [to_json(d) if isinstance(d, dict) else d for d in data]
                          if isinstance(data, list) else data, indent=2, default=str))


def emit_table(rows: Iterable[Sequence[Any]], columns: Sequence[str], title: str | None = None) -> None:
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    stdout.print(table)


def info(message: str) -> None:
    """A human message on stderr (keeps stdout clean for pipes)."""
    stderr.print(message)


class ServiceGroup(click.Group):
    """Turns the core's errors into one clear line on stderr and the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except ServiceError as exc:
            _fail(ctx, exc, 2 if isinstance(exc, USAGE_ERRORS) else 1)
        except ConnectionFailure as exc:  # lost MongoDB mid-command: one sentence, not pymongo's topology dump
            app = ctx.find_object(AppContext)
            where = safe_uri(app.settings.effective_mongo_uri) if app else "(unknown)"
            _fail(ctx, DatabaseUnavailableError(f"MongoDB at {where} stopped answering ({exc.__class__.__name__}); "
                                                "nothing more was done"), 1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # an operation failed for a reason we did not foresee
            _fail(ctx, exc, 1)


def _fail(ctx: click.Context, exc: BaseException, code: int) -> None:
    app = ctx.find_object(AppContext)
    if app is not None and app.debug:
        traceback.print_exc()
    message = exc.message if isinstance(exc, ServiceError) else f"{exc.__class__.__name__}: {exc}"
    if isinstance(exc, ValidationError) and len(exc.errors) > 1:
        message = "invalid input:\n" + "\n".join(f"  - {e['field']}: {e['message']}" for e in exc.errors)
    click.echo(f"error: {message}", err=True)
    logging.shutdown()
    sys.exit(code)
