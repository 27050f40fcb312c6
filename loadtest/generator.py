"""Seeded generator of realistic Segment traffic: personas, a long anonymous tail, bad input."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import orjson

__all__ = ["DEFAULT_PAYLOAD", "PAYLOADS", "Generator", "Message", "Payload"]

#: What each message carries besides the fields Leadstream reads:
#: - `lean`: only those (~210 bytes; the traffic of every figure before stop 28);
#: - `server`: what a server library (@segment/analytics-node) sends, as it lands on
#:   engagement.raw through `leadstream ingest` or Segment (~470 bytes): the library, the
#:   stamps the ingest adds (`receivedAt`, `originalTimestamp`), `node-next-` ids, a
#:   page's URL besides its path: the events a backend, webinar or form tool sends;
#: - `browser`: what analytics.js sends through a Segment source (~880 bytes): the page
#:   it was sent from, user agent, locale, IP, the four timestamps, `ajs-next-` ids.
Payload = Literal["lean", "server", "browser"]
PAYLOADS: tuple[Payload, ...] = ("lean", "server", "browser")
#: What the benchmarks send unless told otherwise (`Generator` itself defaults to `lean`,
#: the traffic the tests were written against).
DEFAULT_PAYLOAD: Payload = "browser"

_COUNTRIES = ("US", "US", "US", "CA", "DE", "GB", "FR", "JP", "AU", "BR")
_TITLES = ("VP Marketing", "Head of Sales", "Sales Manager", "Engineer", "Director of Ops", "CEO")
_BLOG = tuple(f"/blog/post-{i}" for i in range(40))
_SITE = "https://www.example-saas.com"
_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
)
_LOCALES = ("en-US", "en-US", "en-US", "en-GB", "de-DE", "fr-FR", "ja-JP")
_REFERRERS = ("https://www.google.com/", "https://www.linkedin.com/", "", "https://www.bing.com/")
_BAD = (
    b"{not json",
    b"[1, 2, 3]",
    b'{"type":"screen","messageId":"x","anonymousId":"a","timestamp":"2026-01-01T00:00:00Z"}',
    b'{"type":"track","anonymousId":"a","event":"x","timestamp":"2026-01-01T00:00:00Z"}',
    b"\xff\xfe\xfd",
)


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes | None
    value: bytes
    hot: bool  # the event may fire a hot trigger (used to sanity-check alert counts)


class Generator:
    """Deterministic for a seed. Persons 0..leads-1 each have a persona fixed by the seed:

    - casual visitors (60%): a few anonymous page views, never identify;
    - nurture readers (30%): blog, case studies, email clicks, webinars; some identify;
    - hot buyers (10%): product and pricing pages, identify, whitepapers and demo requests.

    Who acts next is drawn with a long tail (a few people are very active, most are seen
    once or twice), like real web traffic.
    """

    def __init__(
        self,
        *,
        leads: int,
        seed: int,
        bad_rate: float = 0.0,
        cover: bool = False,
        payload: Payload = "lean",
    ) -> None:
        if leads < 1:
            raise ValueError("leads must be at least 1")
        if payload not in PAYLOADS:
            raise ValueError(f"payload must be one of {', '.join(PAYLOADS)}, not {payload!r}")
        self.payload = payload
        self.leads = leads
        self.seed = seed
        self.bad_rate = bad_rate
        self.cover = cover  # the first `leads` events visit every person once, in order
        self._rng = random.Random(seed)
        self._count = 0

    def persona(self, person: int) -> str:
        roll = random.Random(self.seed * 1_000_003 + person).random()
        return "casual" if roll < 0.6 else "nurture" if roll < 0.9 else "hot"

    def _person(self) -> int:
        rng = self._rng
        if self.cover and self._count <= self.leads:
            return self._count - 1
        if rng.random() < 0.5:
            # the active head: a small set of people who come back often
            return int(rng.paretovariate(1.2)) % self.leads
        return rng.randrange(self.leads)

    def messages(self, *, now_ms: int | None = None) -> Iterator[Message]:
        while True:
            yield self.next(now_ms=now_ms)

    def next(self, *, now_ms: int | None = None) -> Message:
        rng = self._rng
        self._count += 1
        if self.bad_rate and rng.random() < self.bad_rate:
            return Message(None, rng.choice(_BAD), False)
        person = self._person()
        persona = self.persona(person)
        anon = f"anon-{self.seed}-{person}"
        ms = now_ms if now_ms is not None else int(datetime.now(UTC).timestamp() * 1000)
        base: dict[str, object] = {
            "messageId": f"lt-{self.seed}-{self._count}",
            "anonymousId": anon,
            "timestamp": datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds"),
            "context": {"library": {"name": "analytics.js", "version": "5.2.0"}},
        }
        roll = rng.random()
        hot = False
        msg: dict[str, object]
        if persona == "casual":
            path = "/careers" if roll < 0.05 else rng.choice(("/", "/about", *_BLOG[:10]))
            msg = {"type": "page", **base, "properties": {"path": path}}
        elif persona == "nurture":
            if roll < 0.08:
                msg = self._identify(base, person)
            elif roll < 0.25:
                event = rng.choice(("Email Link Clicked", "Webinar Attended", "Form Submitted"))
                msg = {"type": "track", **base, "event": event, "properties": {}}
            else:
                path = rng.choice((*_BLOG, "/customers/acme", "/customers/globex", "/product"))
                msg = {"type": "page", **base, "properties": {"path": path}}
        else:
            if roll < 0.15:
                msg = self._identify(base, person)
            elif roll < 0.25:
                hot = True
                event = "Demo Requested" if rng.random() < 0.25 else "Whitepaper Downloaded"
                msg = {"type": "track", **base, "event": event, "properties": {}}
            else:
                hot = roll < 0.65
                path = "/pricing" if hot else rng.choice(("/product", "/product/routing"))
                msg = {"type": "page", **base, "properties": {"path": path}}
        if self.payload == "browser":
            msg = self._browser(msg, person)
        elif self.payload == "server":
            msg = self._server(msg, ms)
        return Message(anon.encode(), orjson.dumps(msg), hot)

    def _browser(self, msg: dict[str, object], person: int) -> dict[str, object]:
        """`msg` as analytics.js sends it: the same fields, and what a browser adds. Drawn
        from the person and the message count, not the traffic's generator: the lean and
        the browser traffic of a seed are the same events."""
        pick = random.Random(f"browser-{self.seed}-{person}")  # fixed per person: one browser
        agent, locale = pick.choice(_AGENTS), pick.choice(_LOCALES)
        ip = ".".join(str(pick.randrange(low, 255)) for low in (11, 0, 0, 1))
        ordinal = f"{self.seed}-{self._count}"
        referrer = _REFERRERS[_hash_int(ordinal) % len(_REFERRERS)]
        props = msg.get("properties")
        path = props.get("path") if isinstance(props, dict) else None
        path = path if isinstance(path, str) else "/product"
        page = {
            "path": path,
            "referrer": referrer,
            "search": "",
            "title": f"{path.strip('/').replace('/', ' - ').title() or 'Home'} | Example SaaS",
            "url": _SITE + path,
        }
        stamp = msg["timestamp"]
        out = {
            **msg,
            "messageId": "ajs-next-" + _md5(ordinal),
            "channel": "client",
            "context": {
                "ip": ip,
                "library": {"name": "analytics.js", "version": "npm:next-1.72.0"},
                "locale": locale,
                "page": page,
                "userAgent": agent,
            },
            "integrations": {},
            "originalTimestamp": stamp,
            "receivedAt": stamp,
            "sentAt": stamp,
            "version": 2,
        }
        if msg["type"] == "page":
            out["properties"] = page
        return out

    def _server(self, msg: dict[str, object], ms: int) -> dict[str, object]:
        """`msg` as @segment/analytics-node sends it, stamped by the ingest: the same fields
        (a page's URL besides its path), and what the library and the ingest add. Drawn
        from the message count, not the traffic's generator (the same events as lean)."""
        stamp = msg["timestamp"]
        out = {
            **msg,
            "messageId": f"node-next-{ms}-{_uuid(f'{self.seed}-{self._count}')}",
            "context": {"library": {"name": "@segment/analytics-node", "version": "2.1.3"}},
            "integrations": {},
            "_metadata": {"jsRuntime": "node"},
            "originalTimestamp": stamp,
            "receivedAt": stamp,
        }
        props = msg.get("properties")
        if msg["type"] == "page" and isinstance(props, dict) and isinstance(props.get("path"), str):
            out["properties"] = {**props, "url": _SITE + props["path"]}
        return out

    def _identify(self, base: dict[str, object], person: int) -> dict[str, object]:
        rng = self._rng
        company = person % 5000
        return {
            "type": "identify",
            **base,
            "userId": f"user-{self.seed}-{person}",
            "traits": {
                "email": f"p{person}@company{company}.example",
                "name": f"Person {person}",
                "company": f"Company {company}",
                "employees": rng.choice((12, 60, 150, 280, 900, 5000)),
                "title": rng.choice(_TITLES),
                "country": rng.choice(_COUNTRIES),
                "purchase_timeline": rng.choice(("this quarter", "next 6 months", None)),
            },
        }


def _md5(text: str) -> str:
    """32 hex digits, as analytics.js makes its messageIds (an id, not security)."""
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _uuid(text: str) -> str:
    """A version-4-shaped UUID of `text` (stable: the traffic is reproducible by seed)."""
    h = _md5(text)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _hash_int(text: str) -> int:
    """A stable small integer of `text` (Python's own hash is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")
