"""Demo steps that show each transfer's due time and check the case's evidence."""

from datetime import datetime, timedelta

import click

from services.evidence_check import Broken, check_case_file


def show_deadlines_and_evidence(client, case_id):
    """Print due times, then check the case's evidence file; return whether it held."""
    case = client.call("GET", f"/cases/{case_id}")
    click.echo("  due times (service days counted on Chinese working days):")
    for transfer in case["transfers"]:
        if transfer["due_at"] is None:
            click.echo(f"    {transfer['service_org']}: not delivered")
            continue
        # due_at is 24:00 of the last day, which ISO 8601 writes as the next 00:00.
        last_day = datetime.fromisoformat(transfer["due_at"]) - timedelta(seconds=1)
        late = ", overdue" if transfer["overdue"] else ""
        name = transfer["service_org"]
        click.echo(f"    {name}: due by the end of {last_day:%Y-%m-%d}{late}")
    document = client.call("GET", f"/cases/{case_id}/evidence")
    try:
        summary = check_case_file(document)
    except Broken as error:
        click.echo(f"  !! evidence check failed: {error}")
        return False
    kinds = sorted({entry["kind"] for entry in document["entries"]})
    click.echo(f"  evidence: {summary} offline ({', '.join(kinds)})")
    return True
