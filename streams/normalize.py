"""Normalization: a validated Segment message to the compact event the lead core reads."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.events import EngagementEvent, GroupEvent, IdentifyEvent, PageEvent, TrackEvent
from schemas.internal import PersonEvent, TraitValue
from streams.construct import trusted

__all__ = [
    "DEFAULT_EMAIL_RULES",
    "EPOCH",
    "MS",
    "EmailProvider",
    "EmailRules",
    "email_identity",
    "load_email_rules",
    "normalize",
    "normalize_company",
    "normalize_email",
    "normalize_phone",
    "normalize_traits",
    "person_event",
    "person_key",
]

# Segment trait names (and common variants) -> our trait names.
_TRAIT_NAMES = {
    "email": "email",
    "name": "name",
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
    "title": "title",
    "phone": "phone",
    "company": "company",
    "employees": "employees",
    "industry": "industry",
    "country": "country",
    "website": "website",
    "purchase_timeline": "purchase_timeline",
    "purchaseTimeline": "purchase_timeline",
    "budget": "budget",
    "authority": "authority",
    "need": "need",
    # The CRM's id of the person (a Salesforce contact or lead id): links identities.
    "crm_id": "crm_id",
    "crmId": "crm_id",
    "crm_contact_id": "crm_id",
    "contact_id": "crm_id",
    "contactId": "crm_id",
    "salesforce_id": "crm_id",
}
_MAX_TRAIT_CHARS = 256
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def person_key(event: EngagementEvent) -> str:
    """Whose event this is: the browser's anonymousId when there is one, else the userId.

    Browser SDKs send the anonymousId on every call, before and after `identify`, so an
    anonymous visitor and the person they turn out to be share one key and one partition.
    """
    return _person_key(event.anonymous_id, event.user_id)


def _person_key(anonymous_id: str | None, user_id: str | None) -> str:
    return anonymous_id or user_id or ""


def normalize_email(value: str) -> str | None:
    email = value.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        return None
    return email


def normalize(event: EngagementEvent, *, src: tuple[int, int] | None = None) -> PersonEvent:
    """The compact, normalized form the lead core works on; `src`: where it was read."""
    return person_event(
        kind=event.type,
        message_id=event.message_id,
        anonymous_id=event.anonymous_id,
        user_id=event.user_id,
        ts_ms=(event.timestamp - EPOCH) // MS,  # exact: no float rounding
        context=event.context,
        event=event.event if isinstance(event, TrackEvent) else None,
        properties=event.properties if isinstance(event, TrackEvent | PageEvent) else {},
        page_name=event.name if isinstance(event, PageEvent) else None,
        traits=event.traits if isinstance(event, IdentifyEvent | GroupEvent) else {},
        src=src,
    )


def person_event(
    *,
    kind: str,
    message_id: str,
    anonymous_id: str | None,
    user_id: str | None,
    ts_ms: int,
    context: Mapping[str, Any],
    event: str | None,
    properties: Mapping[str, Any],
    page_name: str | None,
    traits: Mapping[str, Any],
    src: tuple[int, int] | None = None,
) -> PersonEvent:
    """Normalization from validated fields; shared by the model path and the fast path."""
    ours: dict[str, TraitValue] = _traits(traits) if traits else {}
    asset = None
    if kind == "track":
        name = event or ""
        asset = _asset(properties)
    elif kind == "page":
        name = _page_path(properties, page_name)
    else:
        name = ""
    # Segment puts known traits in context.traits on track/page calls too.
    context_traits = context.get("traits")
    if isinstance(context_traits, dict):
        ours = {**_traits(context_traits), **ours}
    location = context.get("location")
    if "country" not in ours and isinstance(location, dict):
        country = location.get("country")
        if isinstance(country, str):
            ours["country"] = country
    if isinstance(ours.get("country"), str):
        ours["country"] = str(ours["country"]).strip().upper()
    utm = context.get("campaign")
    source = campaign = None
    if isinstance(utm, dict):
        source, campaign = _utm(utm.get("source")), _utm(utm.get("name"))
    return trusted(
        PersonEvent,
        {
            "mid": message_id,
            "pk": _person_key(anonymous_id, user_id),
            "kind": kind,
            "name": name[:_MAX_TRAIT_CHARS],
            "ts_ms": ts_ms,
            "aid": anonymous_id,
            "uid": user_id,
            "traits": ours,
            "asset": asset,
            "source": source,
            "campaign": campaign,
            "src": src,
        },
    )


_MAX_UTM_CHARS = 64


def _utm(value: Any) -> str | None:
    """A UTM field as the lead keeps it: a string, trimmed, cut to 64 characters; else None."""
    if not isinstance(value, str):
        return None
    return value.strip()[:_MAX_UTM_CHARS] or None


_ASSET_PROPERTIES = ("asset", "asset_id", "assetId", "title", "name", "url")


def _asset(properties: Mapping[str, Any]) -> str | None:
    """What a track event was about (the whitepaper, the webinar), for per-asset caps."""
    for key in _ASSET_PROPERTIES:
        value = properties.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:_MAX_TRAIT_CHARS]
        if isinstance(value, int) and not isinstance(value, bool) and _INT_MIN <= value < _INT_END:
            return str(value)  # past 64 bits the fast path reads a float: not an id, either way
    return None


def _page_path(properties: Mapping[str, Any], page_name: str | None) -> str:
    path = properties.get("path")
    if isinstance(path, str) and path:
        return path
    url = properties.get("url")
    if isinstance(url, str) and url:
        try:
            return urlsplit(url).path or "/"
        except ValueError:  # not a URL urlsplit can read ("http://[::1"): no path from it
            pass
    return page_name or "/"


def _traits(raw: Mapping[str, Any]) -> dict[str, TraitValue]:
    out: dict[str, TraitValue] = {}
    for key, value in raw.items():
        ours = _TRAIT_NAMES.get(key)
        if ours is None:
            continue
        if ours == "company" and isinstance(value, dict):
            value = value.get("name")  # Segment allows company as an object
        if ours == "employees":
            value = _int_or_none(value)
        elif ours == "email" and isinstance(value, str):
            value = normalize_email(value)
        elif isinstance(value, str):
            value = value.strip()[:_MAX_TRAIT_CHARS] or None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            value = _number(value)
        elif not isinstance(value, bool):
            value = None
        if value is not None:
            out[ours] = value
    return out


#: The integers orjson reads as integers: [-2^63, 2^64). It reads others as floats.
_INT_MIN, _INT_END = -(2**63), 2**64


def _number(value: int | float) -> int | float | None:
    """A number as a trait keeps it: the same on both intake paths, and writable.

    The fast path (orjson) reads an integer past 64 bits as a float, the models keep it
    whole: it is a float either way. NaN and infinities (1e400 reads as one) are no
    answer, and JSON cannot write them: dropped.
    """
    if type(value) is int:
        if _INT_MIN <= value < _INT_END:
            return value
        try:
            value = float(value)
        except OverflowError:  # past the largest float
            return None
    return value if math.isfinite(value) else None


#: A head count at or past this is not one (dropped, like "about 50"). It also keeps a
#: lead's traits within what the state encoder writes (64-bit integers), and a long digit
#: string from Python's int conversion limit (4,300 digits: ValueError).
_MAX_COUNT = 10**12


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < _MAX_COUNT else None
    if isinstance(value, float) and value == value and abs(value) < _MAX_COUNT:
        return int(value)
    if isinstance(value, str):
        digits = value.replace(",", "").strip()
        # isdecimal, not isdigit: "²" and "①" are digits int() cannot read ("１２０" it can).
        if digits.isdecimal() and len(digits) <= 12:
            return int(digits)
    return None


# --- Identity forms: what two spellings of one email, phone or company compare equal on. ---
# These are for matching only; the traits keep what the person typed.


class EmailProvider(BaseModel):
    """A mail provider whose mailboxes ignore parts of the local part when delivering."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    domains: tuple[str, ...] = Field(min_length=1, description="Domains the provider serves.")
    canonical_domain: str | None = Field(
        default=None,
        description="Set when every domain is one mailbox (googlemail.com is gmail.com).",
    )
    ignores_dots: bool = Field(default=False, description="j.doe and jdoe are one mailbox.")
    ignores_plus: bool = Field(default=False, description="jdoe+news is jdoe's mailbox.")

    @field_validator("domains")
    @classmethod
    def _lower_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.strip().lower() for d in value)

    @field_validator("canonical_domain")
    @classmethod
    def _lower_canonical(cls, value: str | None) -> str | None:
        return value.strip().lower() if value is not None else None


class EmailRules(BaseModel):
    """The providers `email_identity` knows; pass your own to add or remove one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    providers: tuple[EmailProvider, ...] = ()

    @cached_property
    def by_domain(self) -> dict[str, EmailProvider]:
        """Each domain's provider. A cached_property, kept in the instance's __dict__: read
        at plain attribute speed (a pydantic private attribute goes through __getattr__,
        ~2.5 us a read: most of `email_identity`'s cost, at every identify)."""
        return {d: p for p in self.providers for d in p.domains}

    def provider(self, domain: str) -> EmailProvider | None:
        return self.by_domain.get(domain)


#: Consumer providers as of 2025. Yahoo is absent on purpose: its "-" addresses are
#: separate aliases (chosen base names), not tags that can be stripped.
DEFAULT_EMAIL_RULES = EmailRules(
    providers=(
        EmailProvider(
            domains=("gmail.com", "googlemail.com"),
            canonical_domain="gmail.com",
            ignores_dots=True,
            ignores_plus=True,
        ),
        EmailProvider(
            domains=(
                "outlook.com",
                "outlook.jp",
                "hotmail.com",
                "hotmail.co.jp",
                "hotmail.co.uk",
                "live.com",
                "live.jp",
                "msn.com",
            ),
            ignores_plus=True,
        ),
        EmailProvider(domains=("icloud.com", "me.com", "mac.com"), ignores_plus=True),
        EmailProvider(domains=("fastmail.com", "fastmail.fm"), ignores_plus=True),
        EmailProvider(
            domains=("proton.me", "protonmail.com", "protonmail.ch", "pm.me"), ignores_plus=True
        ),
    )
)


def load_email_rules(path: Path) -> EmailRules:
    """Mail provider rules from YAML (`providers: [{domains: [...], ignores_dots: true}]`).

    Raises ValueError naming the file on a bad file: a worker should not start on it.
    """
    try:
        return EmailRules.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{path}: not valid email rules: {exc}") from exc


def email_identity(email: str, *, rules: EmailRules) -> str:
    """The form of an email that links people: one mailbox, one identity.

    Lowercased and trimmed everywhere; for the providers in `rules`, the parts their
    mailboxes ignore are dropped too (gmail: dots and +tags, googlemail.com is gmail.com;
    outlook, icloud, fastmail, proton: +tags). Company domains are left alone: whether
    `a.b@acme.com` is `ab@acme.com` is up to Acme's mail server.
    """
    address = email.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return address
    domain = domain.rstrip(".")
    provider = rules.provider(domain)
    if provider is None:
        return f"{local}@{domain}"
    mailbox = local
    if provider.ignores_plus:
        mailbox = mailbox.split("+", 1)[0]
    if provider.ignores_dots:
        mailbox = mailbox.replace(".", "")
    return f"{mailbox or local}@{provider.canonical_domain or domain}"


# Country traits people send that are not ISO 3166 region codes.
_REGION_ALIASES = {"UK": "GB"}


def normalize_phone(value: str, *, default_region: str | None) -> str | None:
    """The number in E.164 (`+81312345678`), or None when it is not a valid number.

    `default_region` (ISO 3166 alpha-2, e.g. the lead's country) reads numbers written the
    national way (`03-1234-5678` in JP); numbers written with `+` need none. Validity comes
    from libphonenumber's metadata (the `phonenumbers` package), not hand-written rules.
    """
    region = _region(default_region)
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _region(country: object) -> str | None:
    if not isinstance(country, str):
        return None
    code = country.strip().upper()
    code = _REGION_ALIASES.get(code, code)
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


def normalize_traits(
    traits: Mapping[str, TraitValue], *, default_region: str | None
) -> dict[str, TraitValue]:
    """Traits with the phone in E.164; a phone that is not a valid number is dropped.

    The region for national-format numbers is the lead's `country` trait when it is a
    region code (`JP`, `DE`; `UK` reads as `GB`), else `default_region` (a setting).
    Dropping rather than keeping the raw text means a bad value never overwrites a good
    number already on the lead, and everything downstream can dial what it is given.
    """
    out = dict(traits)
    if "phone" not in out:
        return out
    phone = out["phone"]
    text = ""
    if isinstance(phone, str):
        text = phone
    elif isinstance(phone, int | float) and not isinstance(phone, bool):
        text = str(int(phone)) if phone == phone and abs(phone) < 1e16 else ""  # NaN
    region = _region(traits.get("country")) or default_region
    e164 = normalize_phone(text, default_region=region)
    if e164 is None:
        del out["phone"]
    else:
        out["phone"] = e164
    return out


# Legal forms written in CJK scripts, removed where they stand before or after the name
# (株式会社トヨタ, トヨタ株式会社, (株)トヨタ); NFKC has already made ㈱ and （株） "(株)"
# and ㍿ "株式会社". Longest first, so 股份有限公司 goes before 有限公司.
_CJK_FORMS = (
    "一般社団法人",
    "一般財団法人",
    "股份有限公司",
    "特定非営利活動法人",
    "株式会社",
    "有限会社",
    "合同会社",
    "合資会社",
    "合名会社",
    "有限公司",
    "주식회사",
    "(株)",
    "(有)",
    "(同)",
    "(資)",
    "(名)",
    "(주)",
)
_CJK_EDGE = re.compile(
    "|".join(
        rf"^\s*{re.escape(form)}\s*|\s*{re.escape(form)}\s*$"
        for form in sorted(_CJK_FORMS, key=len, reverse=True)
    )
)
# Legal forms written in Latin script, as the words they become once punctuation is gone
# ("Co., Ltd." -> co ltd, "K.K." -> k k, "S.A." -> s a), removed from the end of a name
# one at a time ("Acme Holdings Co., Ltd." loses ltd, then co). Single letters only ever
# count as part of a dotted form, so "Plan C" keeps its C.
_WORD_FORMS = (
    # English
    "inc incorporated corp corporation co company ltd limited llc llp lp plc pty pte",
    # German, Austrian, Swiss
    "gmbh ag kg ohg ug ev mbh kgaa",
    # French, Spanish, Italian, Portuguese
    "sa sas sasu sarl eurl snc sl srl ltda",
    # Dutch, Belgian, Nordic
    "bv nv bvba ab as asa oy oyj aps",
    # Japanese and Malaysian, romanised
    "kk gk yk bhd",
)
_DOTTED_FORMS = (
    "s a",
    "s a s",
    "s a r l",
    "s r l",
    "s l",
    "s p a",
    "l l c",
    "l l p",
    "l p",
    "p l c",
    "b v",
    "n v",
    "k k",
    "g k",
    "y k",
    "e v",
    "sdn bhd",
    "gmbh co kg",
    "ug haftungsbeschränkt",
)
_FORMS = frozenset(
    [(word,) for line in _WORD_FORMS for word in line.split()]
    + [tuple(form.split()) for form in _DOTTED_FORMS]
)
_LONGEST_FORM = max(len(form) for form in _FORMS)
_PUNCTUATION = re.compile(r"[\W_]+")


def normalize_company(name: str) -> str:
    """A key two spellings of one company share: `株式会社ＡＢＣ` and `ABC K.K.` are `abc`.

    NFKC (full-width letters and digits to ASCII, ㈱ to (株)), casefolded, legal forms
    dropped (Inc, Co., Ltd., LLC, GmbH, AG, S.A., BV, K.K., 株式会社 before or after the
    name, (株), 有限会社...), punctuation to single spaces. A name that is nothing but a
    legal form keeps it rather than become empty.
    """
    text = unicodedata.normalize("NFKC", name).casefold().strip()
    while True:
        shorter = _CJK_EDGE.sub("", text, count=1)
        if shorter == text or not shorter.strip():
            break
        text = shorter
    words = _PUNCTUATION.sub(" ", text).split()
    while len(words) > 1:
        form = _trailing_form(words)
        if form == 0 or form >= len(words):
            break
        words = words[:-form]
    return " ".join(words)


def _trailing_form(words: Sequence[str]) -> int:
    """How many words at the end of `words` are one legal form (0: none)."""
    tail = tuple(words[-_LONGEST_FORM:])
    for size in range(len(tail), 0, -1):
        if tail[-size:] in _FORMS:
            return size
    return 0
