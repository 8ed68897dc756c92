"""The client for utility systems: accounts, arrears, payments and pushes."""

import logging
from dataclasses import dataclass
from urllib.parse import quote

from partners.http import PartnerError, SignedClient, read_json

log = logging.getLogger(__name__)


class AccountNotFound(PartnerError):
    """The utility has no account with that number."""


@dataclass(frozen=True)
class Account:
    account_no: str
    holder_name: str
    holder_id_numbers: list
    account_address: str
    status: str
    direct_debit: bool


def _expect_fields(partner, data, fields):
    missing = [name for name in fields if name not in data]
    if missing:
        log.warning(
            "partner response lacks fields partner=%s fields=%s", partner, missing
        )
        raise PartnerError(partner, f"response lacks {', '.join(missing)}")


class UtilityClient(SignedClient):
    """Calls one utility at its base URL, signing with its shared secret."""

    def get_account(self, account_no):
        """Return the account's holder and address, or raise AccountNotFound."""
        response = self.request("GET", f"/accounts/{quote(account_no, safe='')}")
        if response.status_code == 404:
            raise AccountNotFound(
                self.partner, "account not found", status=404, retryable=False
            )
        data = self._ok(response)
        _expect_fields(
            self.partner, data, ("account_no", "holder_name", "account_address")
        )
        return Account(
            account_no=data["account_no"],
            holder_name=data["holder_name"],
            holder_id_numbers=list(data.get("holder_id_numbers") or []),
            account_address=data["account_address"],
            status=data.get("status", "active"),
            direct_debit=bool(data.get("direct_debit", False)),
        )

    def get_arrears(self, account_no):
        """Return the amount owed on the account, in fen."""
        path = f"/accounts/{quote(account_no, safe='')}/arrears"
        response = self.request("GET", path)
        if response.status_code == 404:
            raise AccountNotFound(
                self.partner, "account not found", status=404, retryable=False
            )
        data = self._ok(response)
        _expect_fields(self.partner, data, ("arrears_fen",))
        arrears = data["arrears_fen"]
        if not isinstance(arrears, int) or isinstance(arrears, bool) or arrears < 0:
            log.warning(
                "partner sent invalid arrears partner=%s account=%s",
                self.partner,
                account_no,
            )
            raise PartnerError(self.partner, "arrears_fen is not a whole fen amount")
        return arrears

    def check_transfer(self, account_no):
        """Ask whether the account can move to a new holder; return the items.

        Each item names a check (`arrears`, `direct_debit`, `prepaid_balance`,
        `block`, `account_closed` or one the hub does not know yet), whether
        it stops the transfer, and an amount in fen or a reason where it has
        one.
        """
        path = f"/accounts/{quote(account_no, safe='')}/transfer-check"
        response = self.request("GET", path)
        if response.status_code == 404:
            raise AccountNotFound(
                self.partner, "account not found", status=404, retryable=False
            )
        data = self._ok(response)
        _expect_fields(self.partner, data, ("transferable", "items"))
        items = data["items"]
        if not isinstance(data["transferable"], bool) or not isinstance(items, list):
            raise PartnerError(self.partner, "transfer check has the wrong types")
        return {
            "transferable": data["transferable"],
            "items": [self._check_item(item) for item in items],
        }

    def _check_item(self, item):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("item"), str)
            and isinstance(item.get("blocking"), bool)
        ):
            log.warning("partner sent an invalid check item partner=%s", self.partner)
            raise PartnerError(self.partner, "a transfer check item is invalid")
        amount = item.get("amount_fen")
        if amount is not None and (
            not isinstance(amount, int) or isinstance(amount, bool) or amount < 0
        ):
            raise PartnerError(self.partner, "amount_fen is not a whole fen amount")
        reason = item.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise PartnerError(self.partner, "a check item's reason is not text")
        return {
            "item": item["item"][:32],
            "blocking": item["blocking"],
            "amount_fen": amount,
            "reason": reason[:200] if reason else None,
        }

    def read_meter(self, account_no, transfer_id, reading_date):
        """Request the account's meter reading for the transfer day; return it."""
        path = f"/accounts/{quote(account_no, safe='')}/meter-readings"
        payload = {"transfer_id": transfer_id, "reading_date": reading_date}
        data = self._ok(self.request("POST", path, payload))
        fields = ("reading_id", "value", "unit", "read_at", "method")
        _expect_fields(self.partner, data, fields)
        if not all(isinstance(data[name], str) and data[name] for name in fields):
            log.warning("partner sent an invalid reading partner=%s", self.partner)
            raise PartnerError(self.partner, "a meter reading field is not text")
        return {name: data[name][:64] for name in fields}

    def dispute_reading(self, reading_id, note, photo_sha256, photo_base64):
        """Send the applicant's dispute of a reading, with the photo."""
        path = f"/meter-readings/{quote(reading_id, safe='')}/disputes"
        payload = {
            "note": note,
            "photo_sha256": photo_sha256,
            "photo_base64": photo_base64,
        }
        return self._ok(self.request("POST", path, payload))

    def report_payment(self, account_no, payment_id, amount_fen, paid_at):
        """Tell the utility that the hub collected a payment for the account."""
        path = f"/accounts/{quote(account_no, safe='')}/payments"
        payload = {
            "payment_id": payment_id,
            "amount_fen": amount_fen,
            "paid_at": paid_at,
        }
        return self._ok(self.request("POST", path, payload))

    def reverse_payment(self, account_no, payment_id, amount_fen):
        """Tell the utility that a reported payment was returned to the payer."""
        account = quote(account_no, safe="")
        path = f"/accounts/{account}/payments/{quote(payment_id, safe='')}/reversal"
        payload = {"payment_id": payment_id, "amount_fen": amount_fen}
        return self._ok(self.request("POST", path, payload))

    def push_transfer(self, payload, message_id):
        """Push one Annex 2 transfer. The utility accepts at once and reports later."""
        return self._ok(self.request("POST", "/transfers", payload, message_id))

    def _ok(self, response):
        if 200 <= response.status_code < 300:
            data = read_json(self.partner, response)
            if not isinstance(data, dict):
                raise PartnerError(self.partner, "response is not a JSON object")
            return data
        code = message = None
        try:
            body = response.json()
            code, message = body.get("code"), body.get("message")
        except (ValueError, AttributeError):
            log.warning(
                "partner error body is not a JSON object partner=%s", self.partner
            )
        log.warning(
            "partner rejected request partner=%s status=%s code=%s message=%s",
            self.partner,
            response.status_code,
            code,
            message,
        )
        raise PartnerError(
            self.partner,
            f"HTTP {response.status_code}",
            status=response.status_code,
            code=code,
            retryable=response.status_code >= 500 or response.status_code == 429,
        )
