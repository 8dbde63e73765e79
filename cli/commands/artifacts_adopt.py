"""``artifacts adopt NAME --trust``: bring a reference-system document's files in without retraining."""

from __future__ import annotations

import click

from cli.context import AppContext, emit_json, info, json_option, pass_app, stdout


def register(cli: click.Group) -> None:
    cli.commands["artifacts"].add_command(adopt)  # type: ignore[attr-defined]


@click.command("adopt")
@click.argument("name")
@click.option(
    "--trust",
    is_flag=True,
    help="I vouch for these files: hash, sign and load them (loading a pickle runs code from it).",
)
@json_option
@pass_app
def adopt(app: AppContext, name: str, trust: bool, as_json: bool) -> None:
    """Adopt legacy config NAME: record checksums of its files and compute its out-of-fold predictions.

    The final model is not retrained. Refused without --trust (no file is read before it), and when a
    file is missing (file_missing).
    """
    from models.training.adopt import adopt_legacy

    def progress(fraction: float, message: str) -> None:
        if not as_json:
            info(f"[{fraction * 100:5.1f}%] {message}")

    run = adopt_legacy(app.db, name, trust=trust, requested_by="cli", progress=progress)
    if as_json:
        emit_json(run)
        return
    cv = run["cv"]
    stdout.print(
        f"adopted {run['name']} as run {run['run_id']} (version {run['version']}): checksums recorded for "
        f"{', '.join(k for k in ('model', 'scaler', 'features'))}; out-of-fold predictions from "
        f"{cv['n_splits']}-fold CV of a clone ({cv['metric']} {cv['mean']:.4f}); it can join ensembles now"
    )
