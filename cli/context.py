"""What every command shares: the lazily opened database, output in human or JSON form, errors.

Conventions: results go to stdout (JSON with ``--json``, a table otherwise);
progress and errors go to stderr. Exit codes: 0 success, 1 the operation
failed, 2 bad input (usage, validation, unknown names).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

from models.errors import (
    ConflictError,
    DatabaseUnavailableError,
    DataError,
    NotFoundError,
    ServiceError,
    ValidationError,
    describe_exception,
)
from models.settings import Settings, get_settings

if TYPE_CHECKING:  # imported when used: `python -m cli --help` must not pay for pymongo, numpy or rich
    from rich.console import Console

    from models.store.db import Database

USAGE_ERRORS = (ValidationError, NotFoundError, ConflictError, DataError)  # bad input: exit 2


class LazyConsole:
    """A rich ``Console`` made on first use (importing rich costs more than the whole of ``--help``)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            options = dict(self._options)
            if options.pop("pipe_width", False):
                options["width"] = 200 if not sys.stdout.isatty() else None
            self._console = Console(**options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


stderr = LazyConsole(stderr=True, highlight=False, soft_wrap=True)
stdout = LazyConsole(highlight=False, pipe_width=True)


class LazyChoice(click.Choice):
    """A ``click.Choice`` whose values come from the core only when a command is parsed or its help shown,
    so that registering the command imports nothing heavy."""

    def __init__(self, load: Callable[[], Iterable[str]], case_sensitive: bool = True) -> None:
        self._load = load
        self._loaded: tuple[str, ...] | None = None
        self.case_sensitive = case_sensitive

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        if self._loaded is None:
            self._loaded = tuple(self._load())
        return self._loaded


class AppContext:
    """Carried on ``click.Context.obj``."""

    def __init__(self, settings: Settings | None = None, debug: bool = False) -> None:
        self.settings = settings or get_settings()
        self.debug = debug
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            from models.store.configs import recover_interrupted_trainings
            from models.store.db import Database

            self._db = Database.connect(self.settings)
            # a config left "training" by a killed run on this host (a CLI run, too) is repaired here,
            # not only when `serve` starts
            recover_interrupted_trainings(self._db)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


pass_app = click.make_pass_decorator(AppContext, ensure=True)


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(f)


def emit_json(data: Any) -> None:
    from models.jsonable import to_json

    click.echo(
        json.dumps(
            to_json(data)
            if isinstance(data, dict)
            else [to_json(d) if isinstance(d, dict) else d for d in data]
            if isinstance(data, list)
            else data,
            indent=2,
            default=str,
        )
    )


def emit_table(rows: Iterable[Sequence[Any]], columns: Sequence[str], title: str | None = None) -> None:
    from rich.table import Table

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

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:  # `--help` is printed while the arguments are parsed
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            reader_gone()
            raise  # not reached

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except ServiceError as exc:
            _fail(ctx, exc, 2 if isinstance(exc, USAGE_ERRORS) else 1)
        except BrokenPipeError:
            reader_gone()
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # an operation failed for a reason we did not foresee
            if _is_connection_failure(exc):  # lost MongoDB mid-command: one sentence, not pymongo's topology dump
                from models.store.db import safe_uri

                app = ctx.find_object(AppContext)
                where = safe_uri(app.settings.effective_mongo_uri) if app else "(unknown)"
                _fail(
                    ctx,
                    DatabaseUnavailableError(
                        f"MongoDB at {where} stopped answering ({exc.__class__.__name__}); nothing more was done"
                    ),
                    1,
                )
            _fail(ctx, exc, 1)


BROKEN_PIPE_EXIT = 1  # not all output was delivered; the same code click and rich use for a closed pipe


def reader_gone() -> None:
    """The reader of our stdout went away (``python -m cli ... | head``): stop quietly, without a traceback
    and without Python's "Exception ignored ... BrokenPipeError" when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (tests' CliRunner): nothing is flushed to a pipe at exit
        pass
    logging.shutdown()
    sys.exit(BROKEN_PIPE_EXIT)


def _is_connection_failure(exc: BaseException) -> bool:
    if "pymongo" not in sys.modules:  # nothing talked to MongoDB, so it cannot have been lost
        return False
    from pymongo.errors import ConnectionFailure

    return isinstance(exc, ConnectionFailure)


def _fail(ctx: click.Context, exc: BaseException, code: int) -> None:
    app = ctx.find_object(AppContext)
    if app is not None and app.debug:
        traceback.print_exc()
    message = exc.message if isinstance(exc, ServiceError) else describe_exception(exc)
    if isinstance(exc, ValidationError) and len(exc.errors) > 1:
        message = "invalid input:\n" + "\n".join(f"  - {e['field']}: {e['message']}" for e in exc.errors)
    click.echo(f"error: {message}", err=True)
    logging.shutdown()
    sys.exit(code)
