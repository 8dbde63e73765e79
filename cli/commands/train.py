"""``train NAME...``: train configs in the foreground with a progress bar per model."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cli.context import (
    AppContext,
    emit_json,
    emit_table,
    info,
    json_option,
    pass_app,
    stderr,
)
from cli.progress_lines import ProgressLines
from models.errors import ServiceError, ValidationError
from models.store.configs import ConfigStore
from models.training.train import train_config


def register(cli: click.Group) -> None:
    cli.add_command(train)


def _selected(app: AppContext, names: tuple[str, ...], all_: bool, untrained: bool) -> list[str]:
    store = ConfigStore(app.db)
    if all_ or untrained:
        docs = store.list()
        chosen = [d["name"] for d in docs if all_ or not d.get("run_id")]
    else:
        chosen = [store.get(n)["name"] for n in names]  # unknown names fail before anything trains
    if not chosen and not (all_ or untrained):
        raise ValidationError("name at least one config, or use --all / --untrained", field="NAME")
    return list(dict.fromkeys(chosen))


def warn_slow(app: AppContext, names: list[str]) -> None:
    """Before training: a warning for each config whose model type is known to be slow for its data size."""
    from models.training.estimate import count_rows, slow_warning
    for name in names:
        config = ConfigStore(app.db).get(name)
        warning = slow_warning(config, count_rows(config.get("training_csv") or ""))
        if warning:
            info(f"warning: {warning}")


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Train every config.")
@click.option("--untrained", is_flag=True, help="Train the configs that have no artifacts yet.")
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(1, 32),
              help="How many configs to train at once.")
@click.option("--version", help="Set the version by hand (one config only).")
@json_option
@pass_app
def train(app: AppContext, names: tuple[str, ...], all_: bool, untrained: bool, parallel: int,
          version: str | None, as_json: bool) -> None:
    """Train configs and save verified artifacts. Exits 2 if a training failed on bad input (its data), 1 if
    one failed otherwise."""
    chosen = _selected(app, names, all_, untrained)
    if version and len(chosen) != 1:
        raise ValidationError("--version applies to exactly one config", field="--version")
    warn_slow(app, chosen)
    results: dict[str, dict[str, Any]] = {}

    def one(name: str, progress: Any) -> None:
        try:
            run = train_config(app.db, name, progress=progress, version=version, requested_by="cli")
            results[name] = {"name": name, "status": "trained", "run_id": run["run_id"],
                             "version": run["version"], "metrics": run["metrics"], "cv": run["cv"],
                             "seconds": run["durations"]["total_s"], "warnings": run.get("warnings") or []}
        except ServiceError as exc:
            results[name] = {"name": name, "status": "failed", "error": exc.to_dict()}

    if stderr.is_terminal and not as_json and chosen:
        with Progress(TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TextColumn("{task.fields[step]}"), TimeElapsedColumn(), console=stderr) as bars:
            tasks = {n: bars.add_task(n, total=1.0, step="queued") for n in chosen}

            def on_bar(name: str) -> None:
                one(name, lambda fraction, message: bars.update(tasks[name], completed=fraction, step=message))
                if results[name]["status"] == "failed":
                    bars.update(tasks[name], step="[red]failed")

            with ThreadPoolExecutor(max_workers=parallel) as pool:
                list(pool.map(on_bar, chosen))
    else:  # CI, 2>file, --json: plain lines, and a heartbeat while a step runs
        with ProgressLines(app.settings.progress_interval_seconds) as lines:
            def on_lines(name: str) -> None:
                one(name, lines.reporter(name))
                r = results[name]
                lines.finish(name, "failed" if r["status"] == "failed" else f"trained in {r['seconds']:.1f} s")

            with ThreadPoolExecutor(max_workers=parallel) as pool:
                list(pool.map(on_lines, chosen))
    ordered = [results[n] for n in chosen]
    if as_json:
        emit_json(ordered)
    else:
        emit_table(((r["name"], r["status"], r.get("version", ""), r.get("run_id", ""),
                     f"{r['cv']['metric']} {r['cv']['mean']:.4f}" if "cv" in r else r["error"]["message"],
                     f"{r['seconds']:.2f}s" if "seconds" in r else "") for r in ordered),
                   ["config", "status", "version", "run id", "cv score / error", "time"])
    for r in ordered:
        for warning in r.get("warnings") or []:
            info(f"warning: {r['name']}: {warning}")
    failed = [r for r in ordered if r["status"] == "failed"]
    if failed:
        for r in failed:
            info(f"error: {r['name']}: {r['error']['message']}")
        bad_input = {"data_error", "validation_error", "not_found"}
        raise SystemExit(2 if all(r["error"]["code"] in bad_input for r in failed) else 1)
