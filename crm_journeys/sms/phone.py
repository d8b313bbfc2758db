"""Phone numbers to E.164, with ``phonenumbers`` (Google's libphonenumber metadata).

A national number ("030 1234567") only means something with a country: the contact's
own (``country`` field, a name or ISO code), else the tenant's default region. A number
that does not parse or is not a possible number raises ``BadNumber`` with the reason, so
the action dead-letters at once instead of asking Twilio (which would answer 21211).
"""

from __future__ import annotations

from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

PHONE_FIELDS = ("mobile", "mobile_phone", "phone")
_NAMES = {"germany": "DE", "deutschland": "DE", "united states": "US", "usa": "US",
          "united kingdom": "GB", "uk": "GB", "great britain": "GB", "france": "FR", "spain": "ES",
          "italy": "IT", "netherlands": "NL", "austria": "AT", "switzerland": "CH", "canada": "CA",
          "australia": "AU", "ireland": "IE", "belgium": "BE", "poland": "PL", "sweden": "SE"}
_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "no country code, and no country to read it in",
    NumberParseException.NOT_A_NUMBER: "it is not a phone number",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_LONG: "too long",
}


class BadNumber(ValueError):
    """The contact's number cannot be texted; the message says why."""


def region_of(country: Any) -> str | None:
    """An ISO 3166 alpha-2 region from a CRM's country field (code or common name)."""
    text = str(country or "").strip()
    if len(text) == 2 and text.isalpha():
        return text.upper()
    return _NAMES.get(text.lower())


def to_e164(raw: str, region: str | None) -> str:
    """``raw`` as +<country><number>; ``region`` reads a national number."""
    text = (raw or "").strip()
    if not text:
        raise BadNumber("the contact has no phone number")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise BadNumber(f"phone number {text!r} cannot be read: "
                        f"{_REASONS.get(exc.error_type, str(exc))}") from exc
    if not phonenumbers.is_valid_number(number):
        raise BadNumber(f"phone number {text!r} is not a valid number for country code +{number.country_code}")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def contact_number(fields: dict[str, Any], default_region: str | None) -> str:
    """The contact's mobile number in E.164, read with the contact's country."""
    raw = next((str(fields[f]) for f in PHONE_FIELDS if fields.get(f)), "")
    return to_e164(raw, region_of(fields.get("country")) or region_of(default_region))
