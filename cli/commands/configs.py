"""``configs add|list|show|edit|delete``: model config documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.context import AppContext, emit_json, emit_table, info, json_option, pass_app
from models.errors import ValidationError


def register(cli: click.Group) -> None:
    cli.add_command(configs)


@click.group()
def configs() -> None:
    """Manage model configs."""


def _read_documents(path: Path) -> list[dict[str, Any]]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{path}: not UTF-8 text", field=str(path)) from None
    try:
        data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field=str(path)
        ) from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path}: malformed YAML: {exc}", field=str(path)) from None
    docs = data if isinstance(data, list) else [data]
    for doc in docs:
        if not isinstance(doc, dict):
            raise ValidationError(
                f"{path}: each config must be an object, got {type(doc).__name__}", field=str(path)
            )
    return docs


def _collect(paths: tuple[Path, ...]) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for p in paths:
        files = (
            sorted(f for f in p.iterdir() if f.suffix.lower() in (".json", ".yaml", ".yml")) if p.is_dir() else [p]
        )
        for f in files:
            out.extend((f, doc) for doc in _read_documents(f))
    return out


@configs.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--replace", is_flag=True, help="Replace configs that already exist (by name).")
@json_option
@pass_app
def add(app: AppContext, paths: tuple[Path, ...], replace: bool, as_json: bool) -> None:
    """Add configs from JSON or YAML files (or folders of them). All are validated before any is written."""
    from models.store.columns import check_training_columns
    from models.store.configs import ConfigStore, user_fields
    from models.store.schema import refuse_service_fields, validate_config

    docs = _collect(paths)
    errors = []
    for f, doc in docs:
        try:
            refuse_service_fields(doc)
            check_training_columns(
                validate_config(doc), app.settings
            )  # the data too: nothing is written if any fails
        except ValidationError as exc:
            errors.extend({"field": f"{f.name}: {e['field']}", "message": e["message"]} for e in exc.errors)
    if errors:
        raise ValidationError(
            "invalid config: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors
        )
    names = [doc.get("name") for _, doc in docs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValidationError(f"the same name appears more than once: {', '.join(dupes)}", field="name")
    store = ConfigStore(app.db)
    if not replace:
        existing = [n for n in names if store.find(n) is not None]
        if existing:
            raise ValidationError(f"configs already exist: {', '.join(existing)} (use --replace)", field="name")
    added = []
    for _, doc in docs:
        current = store.find(doc["name"]) if replace else None
        if current is not None:
            added.append(store.replace(current["_id"], user_fields(doc)))
        else:
            added.append(store.create(doc, from_user=True))
    if as_json:
        emit_json(added)
    else:
        for doc in added:
            info(f"saved config {doc['name']}")


@configs.command("list")
@click.option("--task", type=click.Choice(["classification", "regression"]))
@click.option("--model-type")
@click.option("--status")
@click.option("--tag")
@click.option("--search", "q", help="Text to find in the name.")
@click.option("--sort", default="name", show_default=True)
@json_option
@pass_app
def list_(app: AppContext, task, model_type, status, tag, q, sort, as_json: bool) -> None:
    """List configs."""
    from models.store.configs import ConfigStore
    from models.training.headline import headline_metric

    docs = ConfigStore(app.db).list(task=task, model_type=model_type, status=status, tag=tag, q=q, sort=sort)
    if as_json:
        emit_json(docs)
        return

    def metric(doc: dict[str, Any]) -> str:
        found = headline_metric(doc)
        return f"{found[0]} {found[1]:.4f}" if found else ""

    emit_table(
        (
            (
                d["name"],
                d.get("task"),
                d.get("model_type"),
                d.get("status") or "new",
                metric(d),
                d.get("version", ""),
                d.get("run_id", ""),
            )
            for d in docs
        ),
        ["name", "task", "model type", "status", "metric", "version", "run id"],
        title=f"{len(docs)} configs",
    )


@configs.command("show")
@click.argument("name")
@json_option
@pass_app
def show(app: AppContext, name: str, as_json: bool) -> None:
    """Show one config."""
    import yaml

    from models.jsonable import to_json
    from models.store.configs import ConfigStore

    doc = ConfigStore(app.db).get(name)
    if as_json:
        emit_json(doc)
    else:
        click.echo(yaml.safe_dump(to_json(doc), sort_keys=False))


def _parse_assignment(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ValidationError(f"--set needs key=value, got {text!r}", field="--set")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ValidationError(f"--set needs a key before '=', got {text!r}", field="--set")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


@configs.command("edit")
@click.argument("name")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a field (value parsed as JSON when it can be; dotted keys reach into "
    "hyperparameters, e.g. hyperparameters.max_depth=8).",
)
@click.option("--unset", "unsets", multiple=True, metavar="KEY", help="Remove a field.")
@json_option
@pass_app
def edit(app: AppContext, name: str, assignments: tuple[str, ...], unsets: tuple[str, ...], as_json: bool) -> None:
    """Change fields of a config (validated before anything is written)."""
    from models.store.configs import ConfigStore

    if not assignments and not unsets:
        raise ValidationError("nothing to change: give --set KEY=VALUE or --unset KEY", field="--set")
    store = ConfigStore(app.db)
    current = store.get(name)
    changes: dict[str, Any] = {}
    for text in assignments:
        key, value = _parse_assignment(text)
        if "." in key:
            top, sub = key.split(".", 1)
            base = changes.get(top, current.get(top))
            if not isinstance(base, dict):
                raise ValidationError(f"{top!r} is not an object; cannot set {key!r}", field=key)
            changes[top] = {**base, sub: value}
        else:
            changes[key] = value
    doc = store.update(current["_id"], changes, unset=unsets)
    if as_json:
        emit_json(doc)
    else:
        info(f"updated config {doc['name']}")


@configs.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_app
def delete(app: AppContext, name: str, yes: bool, as_json: bool) -> None:
    """Delete a config (its runs stay in the registry)."""
    from models.store.configs import ConfigStore

    store = ConfigStore(app.db)
    store.get(name)
    if not yes:
        click.confirm(f"Delete config {name!r}?", abort=True, err=True)
    doc = store.delete(name)
    if as_json:
        emit_json({"deleted": doc["name"]})
    else:
        info(f"deleted config {doc['name']}")
