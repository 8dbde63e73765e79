"""``predict NAME --csv FILE``: predictions of one trained model."""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import AppContext, info, json_option, pass_app


def register(cli: click.Group) -> None:
    cli.add_command(predict)


@click.command()
@click.argument("ref", metavar="NAME")
@click.option("--csv", "csv_path", required=True, type=click.Path(path_type=Path), help="Rows to predict.")
@click.option("--out", type=click.Path(path_type=Path), help="Write predictions here (CSV) instead of stdout.")
@json_option
@pass_app
def predict(app: AppContext, ref: str, csv_path: Path, out: Path | None, as_json: bool) -> None:
    """Predict with a trained model (loaded from verified artifacts).

    NAME is a reference: NAME serves its production run if it has one, else its latest training;
    NAME@production, NAME@staging, NAME@latest, NAME@1.2.0 or a run id pick a run. The run id and
    version that answered are printed (stderr; in the JSON answer with --json)."""
    from cli.csvio import read_csv_arg, write_predictions
    from models.artifacts.loading import load_model
    from models.registry.serving import resolve_model

    served = resolve_model(app.db, ref, field="NAME")
    frame = read_csv_arg(csv_path)
    result = load_model(app.settings, served.doc)
    info(f"{served.name}: run {served.run_id} (version {served.version}, {served.words})")
    for warning in result.model.warnings:
        info(f"warning: {warning}")
    table = result.model.predict_table(frame)
    write_predictions(
        frame, table, out, as_json, meta={"name": served.name, **served.describe(), "source": result.source}
    )
