"""The ``python -m cli`` entry point: one click group; each module in ``cli/commands`` adds its commands.

Command modules import only click and ``cli.context`` at the top; anything heavier (scikit-learn,
pandas, pymongo, rich) is imported inside the command that uses it, so ``--help`` starts in a
fraction of a second (tests/test_cli_startup.py checks which modules ``--help`` loads).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import pkgutil
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, NoReturn

import click

from cli import commands as command_modules
from cli.context import AppContext, ServiceGroup, reader_gone


@click.group(cls=ServiceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Ensemble model cache: train models from MongoDB configs, keep verified artifacts,
    build stacking ensembles without retraining."""
    app = ctx.ensure_object(AppContext)
    app.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    ctx.call_on_close(app.close)


for _info in sorted(pkgutil.iter_modules(command_modules.__path__), key=lambda m: m.name):
    importlib.import_module(f"cli.commands.{_info.name}").register(cli)


def main() -> None:
    _defer_scipy_stats()
    code: int | str | None = 0
    try:
        try:
            cli(prog_name="python -m cli")
        except SystemExit as exc:  # click ends every command this way, with its exit code
            code = exc.code
        finally:
            sys.stdout.flush()  # output still buffered when the command ended meets a closed pipe here
    except BrokenPipeError:
        reader_gone()
    if isinstance(code, str):  # sys.exit("message"): Python would print it and exit 1
        print(code, file=sys.stderr)
        code = 1
    _exit_now(code or 0)


def _defer_scipy_stats() -> None:
    """Load ``scipy.stats`` on first use instead of at import.

    scikit-learn imports it at start-up (``sklearn.utils.fixes``, for one helper), and it costs 0.3-0.5 s
    of every command that touches scikit-learn (its distributions build their docstrings); most commands,
    ``ensemble create`` among them, never call it. Anything that does use a name of it gets the real
    module then (tests/test_cli_startup.py). Installing this imports nothing.
    """
    if "scipy.stats" not in sys.modules and not any(isinstance(f, _DeferScipyStats) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeferScipyStats())


class _DeferScipyStats(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The first ``import scipy.stats`` gets a :class:`_DeferredModule`; the finder then steps aside, so the
    real import, on first use, goes the usual way."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "scipy.stats":
            return None
        sys.meta_path.remove(self)
        real = importlib.machinery.PathFinder.find_spec(fullname, path)
        if real is None:
            return None
        spec = importlib.util.spec_from_loader(fullname, self, is_package=True)
        if spec is not None:
            spec.submodule_search_locations = real.submodule_search_locations  # its submodules import as usual
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _DeferredModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


# functions scikit-learn imports by name from scipy.stats when it starts (sklearn.metrics, sklearn._loss):
# they get a stand-in that imports scipy.stats when first called
DEFERRED_FUNCTIONS = ("rankdata", "gmean")


def _deferred_function(module: _DeferredModule, name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(module._real(), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"scipy.stats.{name}, imported when first called"
    return call


class _DeferredModule(types.ModuleType):
    """Stands in for a module (in ``sys.modules``) until one of its names is used, then imports it.

    Unlike ``importlib.util.LazyLoader`` it survives a plain ``import`` statement, which reads the module's
    ``__spec__`` (a lazy module loads on that)."""

    def _real(self) -> types.ModuleType:
        name = self.__name__
        if sys.modules.get(name) is self or name not in sys.modules:
            sys.modules.pop(name, None)
            real = importlib.import_module(name)
            parent, _, child = name.rpartition(".")
            setattr(sys.modules[parent], child, real)
        return sys.modules[name]

    def __getattr__(self, attr: str) -> object:  # names the placeholder does not have: all the module's own
        if attr.startswith("__") and attr.endswith("__"):  # what the import system asks of any module
            raise AttributeError(attr)
        if attr in DEFERRED_FUNCTIONS and sys.modules.get(self.__name__) is self:
            return _deferred_function(self, attr)
        return getattr(self._real(), attr)


def _exit_now(code: int) -> NoReturn:
    """End the process without the interpreter's teardown.

    By here the command is done: MongoDB acknowledged its writes, artifact files were fsynced, and the
    command's client was closed (``AppContext.close``). Threads are shut down and joined, and the exit
    handlers run, as at any exit and in the interpreter's order; all but pymongo's, which joins the monitor
    threads of clients already closed (up to 0.5 s while they sleep). Then the process ends without
    freeing every module and object one by one (another 0.5 s once scikit-learn is loaded). Measured by
    ``bench/bench_ensemble.py``'s CLI scenario.
    """
    threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's first step: pools' exit hooks, joins
    monitor = sys.modules.get("pymongo.synchronous.monitor")
    if monitor is not None and hasattr(monitor, "_shutdown_resources"):
        atexit.unregister(monitor._shutdown_resources)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code if isinstance(code, int) else 1)
