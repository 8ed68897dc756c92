"""Demo step that logs the seller in and shows their release notice."""

import time

import click

from demo.client import HubClient


def show_release_notice(stack, scenario, case_id, seconds=10):
    """Print the seller's release notice for the case; return whether it came.

    A seller that is a company, or a case with a returned transfer, gets no
    notice, and the step passes without one.
    """
    seller = scenario.sellers[0] if scenario.sellers else None
    if seller is None or seller.id_type != "居民身份证":
        return True
    if scenario.expect.get("returned"):
        return True
    client = HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )
    client.login(seller)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        listed = client.call("GET", "/release-notices")["items"]
        notice = next((n for n in listed if n["case_id"] == case_id), None)
        if notice is not None:
            click.echo("  release notice for the seller (no longer liable):")
            for item in notice["items"]:
                click.echo(
                    f"    {item['service_org']} {item['account_no']}: "
                    f"办结 at {item['completed_at'][:19]}"
                )
            return True
        time.sleep(0.2)
    click.echo("  !! the seller got no release notice")
    return False
