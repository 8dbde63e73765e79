"""``ensemble suggest``: choose base models and weights from the stored out-of-fold predictions."""

from __future__ import annotations

from typing import Any

import click

from cli.context import AppContext, LazyChoice, emit_json, emit_table, info, json_option, pass_app, stdout

METHODS = ("greedy", "stack", "both")  # models.ensembles.selection.METHODS (a test keeps them equal)


def register(cli: click.Group) -> None:
    cli.commands["ensemble"].add_command(suggest)  # type: ignore[attr-defined]


def _metrics() -> list[str]:
    from models.ensembles.selection import SELECTION_METRICS

    return [m for t in SELECTION_METRICS.values() for m in t]


def _meta_models() -> list[str]:
    from models.ensembles.stacking import meta_model_names

    return meta_model_names()


@click.command("suggest")
@click.argument("name")
@click.option("--from", "from_configs", multiple=True, help="A candidate config (repeat for each).")
@click.option(
    "--all-compatible",
    is_flag=True,
    help="Every trained config sharing task, target, data and folds (with --from's first config).",
)
@click.option(
    "--metric",
    type=LazyChoice(_metrics),
    default=None,
    help="Selection metric [default: log_loss for classification, rmse for regression].",
)
@click.option("--size", type=click.IntRange(1, 1000), default=None, help="Greedy selection steps [default: 25].")
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="greedy",
    show_default=True,
    help="greedy: weighted ensemble (Caruana); stack: meta-model over the top candidates; "
    "both: the better honest score.",
)
@click.option(
    "--meta",
    "meta_model",
    type=LazyChoice(_meta_models),
    default=None,
    help="Meta-model for --method stack/both [default: logistic_regression or ridge].",
)
@click.option(
    "--stack-top",
    type=click.IntRange(2, 100),
    default=None,
    help="How many of the best candidates the stacked option uses [default: 5].",
)
@click.option("--description", default="", help="A note stored with the ensemble.")
@click.option(
    "--new-version",
    is_flag=True,
    help="When NAME exists, store the suggestion as its next version (older versions and stages kept).",
)
@json_option
@pass_app
def suggest(
    app: AppContext,
    name: str,
    from_configs: tuple[str, ...],
    all_compatible: bool,
    metric: str | None,
    size: int | None,
    method: str,
    meta_model: str | None,
    stack_top: int | None,
    description: str,
    new_version: bool,
    as_json: bool,
) -> None:
    """Suggest and store ensemble NAME chosen from the candidates' stored out-of-fold predictions."""
    from agents.tools.stacking_tool import StackingTool

    def progress(fraction: float, message: str) -> None:
        if not as_json:
            info(f"[{fraction * 100:5.1f}%] {message}")

    with StackingTool(app.settings, app.db) as tool:
        record = tool.suggest_ensemble(
            name,
            list(from_configs),
            all_compatible=all_compatible,
            metric=metric,
            size=size,
            method=method,
            meta_model=meta_model,
            stack_top=stack_top,
            description=description,
            new_version=new_version,
            progress=progress,
        )
    if as_json:
        emit_json(record)
        return
    print_suggestion(record)


def print_suggestion(record: dict[str, Any]) -> None:
    sel = record["selection"]
    honest, holdout = sel["honest"], sel.get("holdout") or {}
    if sel.get("kept"):
        stdout.print(sel["kept"], highlight=False, markup=False)
    weights = record.get("weights") or [None] * len(record["base_names"])
    emit_table(
        ((n, "" if w is None else f"{w:.3f}") for n, w in zip(record["base_names"], weights)),
        ["base model", "weight"],
        title=f"ensemble {record['name']} ({record['kind']}, {sel['method']}; {len(sel['candidates'])} "
        f"candidates)",
    )
    greedy = sel.get("greedy")
    if greedy and sel["method"] == "greedy":
        emit_table(
            (
                (s["step"], s["added"], f"{s['score']:.5f}", "kept" if s["step"] == greedy["best_step"] else "")
                for s in greedy["steps"]
            ),
            ["step", "added", sel["metric"], ""],
            title="score by step",
        )
    stdout.print(
        f"honest {honest['metric']} ({nesting_words(honest, sel['folds'])}, {honest['rows']} rows): "
        f"ensemble {honest['ensemble']:.5f}, best single {honest['best_single']:.5f} "
        f"({honest['best_single_name']})"
    )
    if holdout:
        stdout.print(
            f"held-out test rows ({holdout['rows']}): ensemble {holdout['ensemble']:.5f}, best single "
            f"{holdout['best_single']:.5f} ({holdout['best_single_name']})"
        )
    for skipped in sel.get("skipped") or []:
        info(f"skipped {skipped['name']}: {skipped['reason']}")


def nesting_words(honest: dict, folds: int) -> str:
    """How the honest score was nested, in words (a time split walks forward and never scores fold 1)."""
    if honest.get("nesting", "").startswith("forward"):
        scored = len(honest.get("per_fold") or [])
        return f"doubly nested, walking forward over {folds} folds: the last {scored} scored"
    return f"doubly nested over {folds} folds"
