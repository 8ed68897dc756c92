"""The `lianban evidence` commands: verify the log, export and check case files."""

import json
from pathlib import Path

import click

from services import evidence_check


def _database():
    from cli import _database as open_database

    return open_database()


@click.group("evidence")
def evidence_command():
    """Verify the signed evidence log, export a case file, or check one."""


@evidence_command.command("verify")
@click.option("--case", "case_id", type=int, help="Check only this case's entries.")
def verify(case_id):
    """Check every entry's hash, signature and link; report the first broken one."""
    from services import evidence

    with _database():
        try:
            if case_id is None:
                count = evidence.verify_log()
            else:
                count = evidence.verify_case(case_id)
        except evidence_check.Broken as error:
            raise click.ClickException(f"evidence broken at {error}") from None
    scope = "the log" if case_id is None else f"case {case_id}"
    click.echo(f"OK: {count} entries of {scope} verified")


@evidence_command.command("export")
@click.option("--case", "case_id", type=int, required=True, help="The case id.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The JSON file to write.",
)
def export(case_id, out):
    """Write a case's entries, public keys and a signed head to a JSON file."""
    from services import evidence

    with _database():
        document = evidence.case_file(case_id)
    out.write_text(json.dumps(document, ensure_ascii=False, indent=1), "utf-8")
    click.echo(f"case {case_id}: {len(document['entries'])} entries written to {out}")


@evidence_command.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check(path):
    """Check a case file offline, without the database."""
    try:
        document = json.loads(path.read_text("utf-8"))
        summary = evidence_check.check_case_file(document)
    except evidence_check.Broken as error:
        raise click.ClickException(f"evidence broken at {error}") from None
    except (ValueError, KeyError, TypeError) as error:
        message = f"{path} is not a readable case file ({error})"
        raise click.ClickException(message) from None
    click.echo(f"OK: {summary}")
    for key_id, encoded in document["public_keys"].items():
        fingerprint = evidence_check.key_fingerprint(encoded)
        click.echo(f"key {key_id} sha256 {fingerprint}")


@evidence_command.command("keys")
def keys():
    """List the signing keys' public halves and fingerprints, to publish."""
    from services import evidence

    with _database():
        stored = evidence.stored_public_keys()
    for key_id, encoded in stored.items():
        fingerprint = evidence_check.key_fingerprint(encoded)
        click.echo(f"{key_id}\t{encoded}\tsha256 {fingerprint}")
