"""``artifacts info|verify|gc|migrate|sign|key``: inspect, check, clean, move and sign artifacts."""

from __future__ import annotations

import click

from cli.context import AppContext, LazyChoice, emit_json, emit_table, info, json_option, pass_app
from cli.progress_lines import ProgressLines
from models.errors import ServiceError


def _backends() -> tuple[str, ...]:
    from models.artifacts.migrate import BACKENDS

    return tuple(BACKENDS)


def register(cli: click.Group) -> None:
    cli.add_command(artifacts)


@click.group()
def artifacts() -> None:
    """Inspect, verify and clean up artifacts."""


@artifacts.command("info")
@click.argument("run_id")
@json_option
@pass_app
def info_cmd(app: AppContext, run_id: str, as_json: bool) -> None:
    """Paths, sizes, checksums and verification state of a run's files."""
    from models.artifacts.maintenance import run_artifacts_info

    data = run_artifacts_info(app.db, run_id)
    if as_json:
        emit_json(data)
        return
    emit_table(
        (
            (k, f["path"], f.get("size", ""), (f.get("sha256") or "")[:16], f["state"])
            for k, f in data["files"].items()
        ),
        ["kind", "path", "bytes", "sha256", "state"],
        title=f"run {run_id} ({data['name']} {data['version']})",
    )
    if not data["all_verified"]:
        raise SystemExit(1)


@artifacts.command("verify")
@click.option(
    "--repair", is_flag=True, help="Retrain exactly the configs whose artifacts are missing, corrupt or stale."
)
@json_option
@pass_app
def verify(app: AppContext, repair: bool, as_json: bool) -> None:
    """Check every config's artifacts against their recorded checksums. Exits 1 if any problem remains."""
    from models.artifacts.maintenance import scan_configs
    from models.training.train import train_config

    report = scan_configs(app.db)
    broken = [r for r in report if r["state"] in ("missing", "corrupt", "stale")]
    if repair:
        for entry in broken:
            info(f"retraining {entry['name']} ({entry['state']})")
            try:
                with ProgressLines(app.settings.progress_interval_seconds) as lines:
                    run = train_config(
                        app.db,
                        entry["name"],
                        requested_by="cli:artifacts verify --repair",
                        progress=lines.reporter(entry["name"]),
                    )
                entry["repaired"] = {"run_id": run["run_id"], "version": run["version"]}
            except ServiceError as exc:
                entry["repair_error"] = exc.message
    if as_json:
        emit_json(report)
    else:
        emit_table(
            (
                (
                    r["name"],
                    r["state"],
                    r.get("run_id") or "",
                    "; ".join(r["problems"]),
                    (r.get("repaired") or {}).get("run_id", r.get("repair_error", "")),
                )
                for r in report
            ),
            ["config", "state", "run id", "problems", "repaired"],
        )
    if any(r for r in broken if "repaired" not in r):
        raise SystemExit(1)


@artifacts.command("gc")
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    help="Also delete runs beyond the newest N per config "
    "(never the current, production or one an "
    "ensemble uses).",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option(
    "--min-age",
    default=900,
    show_default=True,
    type=click.IntRange(min=0),
    help="Leave files younger than this many seconds (a training may be writing them).",
)
@json_option
@pass_app
def gc(app: AppContext, keep: int | None, dry_run: bool, min_age: int, as_json: bool) -> None:
    """Delete artifact files that no document references and no running training has leased, GridFS chunks
    of killed uploads (and, with --keep, old runs)."""
    from models.artifacts.maintenance import collect_orphans
    from models.registry import prune_runs

    result: dict = {}
    if keep is not None:
        result["runs"] = prune_runs(app.db, keep=keep, dry_run=dry_run)
    result.update(collect_orphans(app.db, dry_run=dry_run, min_age_s=min_age))
    if as_json:
        emit_json(result)
        return
    verb = "would delete" if dry_run else "deleted"
    if keep is not None:
        info(f"{verb} {len(result['runs'])} old runs: {', '.join(r['run_id'] for r in result['runs']) or '-'}")
    info(
        f"{verb} {len(result['orphan_files'])} unreferenced files, {len(result['temp_files'])} temp files and "
        f"{result['orphan_chunks']['chunks']} orphan GridFS chunks (of {len(result['orphan_chunks']['files'])} "
        "killed uploads)"
    )
    for path in result["orphan_files"]:
        click.echo(path)


@artifacts.command("migrate")
@click.option(
    "--to", "to", required=True, type=LazyChoice(_backends), help="The backend every artifact should end up in."
)
@click.option("--dry-run", is_flag=True, help="Only report what would be copied, updated and deleted.")
@json_option
@pass_app
def migrate(app: AppContext, to: str, dry_run: bool, as_json: bool) -> None:
    """Move artifacts to GridFS or the local folder and update documents. Safe to run again if interrupted.

    Exits 1 if anything is left to do (a missing or corrupt file, a document changed meanwhile).
    """
    from models.artifacts.migrate import migrate_artifacts

    with ProgressLines(app.settings.progress_interval_seconds) as lines:
        report = migrate_artifacts(app.db, to, dry_run=dry_run, progress=lines.reporter("migrate"))
    data = report.to_dict()
    if as_json:
        emit_json(data)
    else:
        for warning in data["warnings"]:
            info(f"warning: {warning}")
        update, copy, delete = (
            ("would update", "would copy", "would delete") if dry_run else ("updated", "copied", "deleted")
        )
        docs = ", ".join(f"{n} {c}" for c, n in data["documents"].items())
        info(
            f"{update} {docs}; {copy} {len(data['files_copied'])} files (reused {len(data['files_reused'])} "
            f"copies already there); {delete} {len(data['files_deleted'])} old files"
        )
        for problem in data["errors"]:
            info(f"error: {problem['document']}: {problem['message']}")
        for label in data["changed"]:
            info(f"changed meanwhile, run again: {label}")
        for kept in data["files_kept"]:
            info(f"kept {kept['path']}: {kept['reason']}")
    if not report.complete:
        raise SystemExit(1)


@artifacts.command("relocate")
@click.option("--dry-run", is_flag=True, help="Only list the documents that would change.")
@json_option
@pass_app
def relocate(app: AppContext, dry_run: bool, as_json: bool) -> None:
    """Rewrite paths that only one machine understands: local artifact paths to bare file names,
    training CSVs inside a data root to @<root>/<path>. Old documents load without it; safe to repeat."""
    from models.artifacts.relocate import relocate_documents

    report = relocate_documents(app.db, dry_run=dry_run)
    if as_json:
        emit_json(report)
    else:
        verb = "would update" if dry_run else "updated"
        info(f"{verb} " + ", ".join(f"{n} {c}" for c, n in report["documents"].items()))
        for change in report["changes"]:
            click.echo(f"{change['document']}: " + ", ".join(f"{k} -> {v}" for k, v in change["set"].items()))
        for problem in report["errors"]:
            info(f"error: {problem['document']}: {problem['field']}: {problem['message']}")
        for label in report["changed"]:
            info(f"changed meanwhile, run again: {label}")
    if report["errors"] or report["changed"]:
        raise SystemExit(1)


@artifacts.command("sign")
@click.option(
    "--all",
    "all_",
    is_flag=True,
    required=True,
    help="Sign every artifact that has no signature yet, and convert format-1 refs to format 2 (required: "
    "signing is never implicit).",
)
@click.option("--dry-run", is_flag=True, help="Only report what would be signed.")
@json_option
@pass_app
def sign(app: AppContext, all_: bool, dry_run: bool, as_json: bool) -> None:
    """Sign the artifacts written before signing existed, and convert artifacts of format 1 (SHA-256 per block)
    to format 2 (BLAKE3 per block, the faster verified load), after re-checking each file against its checksums.

    Run it once when upgrading from a version without signing, while you trust the database: until then
    those artifacts are refused (or, with REQUIRE_SIGNED=0, load with a warning). Format-1 artifacts keep
    loading and verifying as they are; a signed one is converted only if its signature and bytes verify.
    Exits 1 if a file is missing or fails its checksums, or a signature does not verify.
    """
    from models.artifacts.maintenance import sign_unsigned

    report = sign_unsigned(app.db, dry_run=dry_run)
    if as_json:
        emit_json(report)
    else:
        verb = "would sign" if dry_run else "signed"
        info(f"{verb} {len(report['signed'])} artifacts; {report['already_signed']} were signed already")
        if report["upgraded"]:
            verb = "would convert" if dry_run else "converted"
            info(f"{verb} {len(report['upgraded'])} signed artifacts to artifact format 2 (BLAKE3 blocks)")
        for problem in report["failed"] + report["invalid"]:
            info(f"not signed: {problem['document']} {problem['kind']} {problem['path']}: {problem['reason']}")
    if report["failed"] or report["invalid"]:
        raise SystemExit(1)


@artifacts.command("key")
@click.option(
    "--generate",
    is_flag=True,
    help="Print a new private key (for ARTIFACT_SIGNING_KEY or a key file) instead; nothing is stored.",
)
@json_option
@pass_app
def key(app: AppContext, generate: bool, as_json: bool) -> None:
    """This installation's public signing key (give it to others for their TRUSTED_KEYS) and its source."""
    from models.artifacts.signing import get_signer, new_private_key_text

    if generate:
        text = new_private_key_text()
        if as_json:
            emit_json({"private_key": text})
        else:
            click.echo(text)
        return
    signer = get_signer(app.settings)
    data = {
        "public_key": signer.public_key,
        "source": signer.source,
        "trusted_keys": signer.trusted_keys,
        "require_signed": signer.require_signed,
    }
    if as_json:
        emit_json(data)
    else:
        click.echo(signer.public_key)
        info(
            f"private key from {signer.source}; trusted keys: {len(signer.trusted_keys)}; "
            f"REQUIRE_SIGNED={'1' if signer.require_signed else '0'}"
        )
