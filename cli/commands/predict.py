"""``predict NAME --csv FILE``: predictions of one trained model."""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import AppContext, info, json_option, pass_app


def register(cli: click.Group) -> None:
    cli.add_command(predict)


@click.command()
@click.argument("name")
@click.option("--csv", "csv_path", required=True, type=click.Path(path_type=Path), help="Rows to predict.")
@click.option("--out", type=click.Path(path_type=Path), help="Write predictions here (CSV) instead of stdout.")
@json_option
@pass_app
def predict(app: AppContext, name: str, csv_path: Path, out: Path | None, as_json: bool) -> None:
    """Predict with a trained config's model (loaded from verified artifacts)."""
    from cli.csvio import read_csv_arg, write_predictions
    from models.artifacts.loading import load_model
    from models.store.configs import ConfigStore

    config = ConfigStore(app.db).get(name)
    frame = read_csv_arg(csv_path)
    result = load_model(app.settings, config)
    for warning in result.model.warnings:
        info(f"warning: {warning}")
    table = result.model.predict_table(frame)
    write_predictions(
        frame, table, out, as_json, meta={"name": name, "run_id": result.model.run_id, "source": result.source}
    )
