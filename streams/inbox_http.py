"""The rep inbox over HTTP: the page, its live stream of alerts, the clicks, and the alert reader.

Served on the worker's web port (Faust's web server is aiohttp) when `LEADSTREAM_INBOX_SECRET`
is set. Decisions (who a link is for, what a click produces, which alerts a rep sees) are in
`streams.inbox`; here requests are read and answered, feedback is produced and acknowledged
before the answer, and `InboxFeed` tails `rep.alerts` into the inbox and its open streams.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Protocol, cast

import faust
import mode
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.web import Request, Response, View
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from schemas.decisions import RepAlert
from schemas.feedback import REJECT_REASONS
from streams.codec import decode_output, encode
from streams.inbox import (
    Click,
    Decision,
    Inbox,
    Refusal,
    alert_view,
    feedback_for,
    rep_of,
)
from streams.kafka_connection import KafkaConnection
from streams.lead_model import LeadModel, Rep
from streams.producer import Record
from streams.settings import Settings
from streams.topics import Topics

__all__ = [
    "EVENTS_ROUTE",
    "FEEDBACK_ROUTE",
    "PAGE_ROUTE",
    "InboxFeed",
    "InboxHandler",
    "Sender",
    "Subscribers",
    "add_routes",
    "mount_on_faust",
    "serve_inbox",
]

log = logging.getLogger(__name__)

PAGE_ROUTE: Final = "/inbox"
EVENTS_ROUTE: Final = "/inbox/events"
FEEDBACK_ROUTE: Final = "/inbox/feedback"

#: Longest a click waits for the broker before the page is told to try again.
PRODUCE_TIMEOUT_S: Final = 10.0
#: A comment line this often keeps proxies and the browser from closing an idle stream.
HEARTBEAT_S: Final = 15.0
_MAX_BODY_BYTES: Final = 16 * 1024
_NO_STORE: Final = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

_REASON_LABELS: Final = {
    "bad_timing": "Bad timing",
    "no_budget": "No budget",
    "not_decision_maker": "Not the decision maker",
    "duplicate": "Duplicate",
    "bad_data": "Bad data",
    "other": "Other…",
}


class Sender(Protocol):
    async def send(self, records: Iterable[Record]) -> int: ...


def _frame(event: str, data: Mapping[str, Any]) -> bytes:
    """One server-sent event (orjson writes no newlines, so `data` is one line)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Subscribers:
    """The open live streams, per rep: each gets that rep's new alerts and answers only."""

    def __init__(self, *, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._streams: dict[str, set[asyncio.Queue[bytes | None]]] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, rep_id: str) -> asyncio.Queue[bytes | None]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(self._queue_size + 1)
        if self._closed:
            queue.put_nowait(None)
        else:
            self._streams.setdefault(rep_id, set()).add(queue)
        return queue

    def unsubscribe(self, rep_id: str, queue: asyncio.Queue[bytes | None]) -> None:
        streams = self._streams.get(rep_id)
        if streams is not None:
            streams.discard(queue)
            if not streams:
                del self._streams[rep_id]

    def publish(self, rep_id: str, frame: bytes) -> None:
        for queue in list(self._streams.get(rep_id, ())):
            if queue.qsize() >= self._queue_size:
                # A reader that stopped reading: end its stream (the one slot kept free is
                # for that); the browser reconnects and gets the recent alerts again.
                self.unsubscribe(rep_id, queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(frame)

    def close(self) -> None:
        """End every stream (shutdown); later ones end at once."""
        self._closed = True
        for queues in self._streams.values():
            for queue in queues:
                queue.put_nowait(None)
        self._streams.clear()


class InboxHandler:
    """aiohttp handlers of the page, the live stream and the clicks, for one inbox."""

    def __init__(
        self,
        *,
        secret: str,
        model: Callable[[], LeadModel],
        inbox: Inbox,
        subscribers: Subscribers,
        topic: str,
        producer: Sender,
        clock: Callable[[], datetime],
        produce_timeout_s: float = PRODUCE_TIMEOUT_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._secret = secret
        self._model = model  # read per request: a rep added or removed applies at once
        self._inbox = inbox
        self._subscribers = subscribers
        self._topic = topic
        self._producer = producer
        self._clock = clock
        self._produce_timeout_s = produce_timeout_s
        self._heartbeat_s = heartbeat_s
        self._sends: set[asyncio.Future[int]] = set()

    def _rep(self, token: str | None) -> Rep | None:
        model = self._model()
        rep_id = rep_of(token, self._secret, {r.id for r in model.reps}, now=self._clock())
        return None if rep_id is None else model.rep(rep_id)

    async def page(self, request: web.Request) -> web.Response:
        rep = self._rep(request.query.get("token"))
        if rep is None:
            return web.Response(
                status=401,
                text=_DENIED_PAGE,
                content_type="text/html",
                headers={**_NO_STORE, "Referrer-Policy": "no-referrer"},
            )
        nonce = secrets.token_urlsafe(16)
        return web.Response(
            text=_page(rep, token=request.query["token"], nonce=nonce),
            content_type="text/html",
            headers={
                **_NO_STORE,
                # The token is in the address: it must never leave in a Referer.
                "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": (
                    f"default-src 'none'; script-src 'nonce-{nonce}'; "
                    f"style-src 'nonce-{nonce}'; connect-src 'self'; base-uri 'none'; "
                    "form-action 'none'; frame-ancestors 'none'"
                ),
            },
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        rep = self._rep(request.query.get("token"))
        if rep is None:
            return web.Response(
                status=401, text="this inbox link is not valid\n", headers=_NO_STORE
            )
        response = web.StreamResponse(
            headers={
                **_NO_STORE,
                "Content-Type": "text/event-stream",
                "X-Accel-Buffering": "no",  # nginx: pass events on as they come
            }
        )
        # Subscribed before the recent alerts are read, so none falls in between (the page
        # ignores an alert it already shows).
        queue = self._subscribers.subscribe(rep.id)
        try:
            await response.prepare(request)
            backlog = [b"retry: 2000\n\n"]
            for alert in reversed(self._inbox.recent(rep.id)):  # oldest first: the page prepends
                view = alert_view(alert, self._inbox.decision(rep.id, alert.alert_id))
                backlog.append(_frame("alert", view))
            backlog.append(_frame("ready", {}))  # what follows is new
            await response.write(b"".join(backlog))
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), self._heartbeat_s)
                except TimeoutError:
                    frame = b": heartbeat\n\n"
                if frame is None:
                    break
                await response.write(frame)
            await response.write_eof()
        except ConnectionError:
            pass  # the browser went away; it reconnects by itself if it wants to
        finally:
            self._subscribers.unsubscribe(rep.id, queue)
        return response

    async def feedback(self, request: web.Request) -> web.Response:
        status, body = await self._feedback(request)
        return web.Response(
            status=status,
            body=orjson.dumps(body),
            content_type="application/json",
            headers=_NO_STORE,
        )

    async def _feedback(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        raw = await request.content.read(_MAX_BODY_BYTES + 1)
        if len(raw) > _MAX_BODY_BYTES:
            return 413, _error("the request is too large")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 400, _error("the request is not JSON")
        if not isinstance(doc, dict):
            return 400, _error("the request is not a JSON object")
        rep = self._rep(_text(doc.get("token")))
        if rep is None:
            return 401, _error("this inbox link is not valid")
        click = Click(
            lead_id=_text(doc.get("lead_id")) or "",
            alert_id=_text(doc.get("alert_id")) or "",
            status=_text(doc.get("status")) or "",
            reason=_text(doc.get("reason")),
            reason_text=_text(doc.get("reason_text")),
        )
        alert = self._inbox.find(rep.id, click.alert_id)
        result = feedback_for(click, alert=alert, rep_id=rep.id, now=self._clock())
        if isinstance(result, Refusal):
            return result.status, _error(result.message)
        record = Record(self._topic, result.lead_id.encode(), encode(result))
        # Shielded: a timeout answers 503 and leaves aiokafka's futures alone; a retried click
        # has the same feedback_id, so a late first copy and the retry count once.
        send = asyncio.ensure_future(self._producer.send([record]))
        self._sends.add(send)
        send.add_done_callback(self._sent)
        try:
            await asyncio.wait_for(asyncio.shield(send), self._produce_timeout_s)
        except Exception as exc:
            log.warning("inbox: producing to %s failed: %r", self._topic, exc)
            return 503, _error("your answer could not be saved just now; try again")
        decision = Decision(
            status=click.status,  # type: ignore[arg-type]  # feedback_for checked it
            reason=result.reason,
            reason_text=result.reason_text,
        )
        self._inbox.decide(rep.id, click.alert_id, decision)
        view = alert_view(cast(RepAlert, alert), decision)
        self._subscribers.publish(rep.id, _frame("alert", view))  # the rep's other tabs
        return 200, {"ok": True, "feedback_id": result.feedback_id, "decision": view["decision"]}

    def _sent(self, send: asyncio.Future[int]) -> None:
        self._sends.discard(send)
        if not send.cancelled():
            send.exception()  # retrieved here: a late failure was already answered with 503

    async def on_shutdown(self, app: web.Application | None = None) -> None:
        """End the live streams, so the web server's stop does not wait for them."""
        self._subscribers.close()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "message": message}


class InboxFeed(mode.Service):
    """Tails `rep.alerts` into the inbox and the open streams; no consumer group.

    Every worker reads every partition, so any worker serves any rep. At start it goes back
    about `backlog_per_partition` records in each partition (the recent alerts a page shows),
    then follows new ones as they arrive.
    """

    def __init__(
        self,
        *,
        topic: str,
        kafka: KafkaConnection,
        inbox: Inbox,
        subscribers: Subscribers,
        fetch_wait_ms: int,
        backlog_per_partition: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._topic = topic
        self._kafka = kafka
        self._inbox = inbox
        self._subscribers = subscribers
        self._fetch_wait_ms = fetch_wait_ms
        self._backlog = backlog_per_partition
        self._consumer: AIOKafkaConsumer | None = None

    def apply(self, value: bytes | None) -> None:
        """Keep one `rep.alerts` record and tell the rep's open pages if it is new."""
        alert = decode_output(RepAlert, value)
        if alert is None:
            log.warning("inbox: a record on %s is not an alert; skipped", self._topic)
            return
        if self._inbox.add(alert):
            view = alert_view(alert, self._inbox.decision(alert.rep_id, alert.alert_id))
            self._subscribers.publish(alert.rep_id, _frame("alert", view))

    async def _connect(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **self._kafka.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._fetch_wait_ms,
        )
        try:
            await consumer.start()
            while not (partitions := consumer.partitions_for_topic(self._topic)):
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
            # Before assigning: a fetch in flight would hold these up (`open_partition`).
            first = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, max(first[tp], end[tp] - self._backlog))
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        return consumer

    @mode.Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            try:
                consumer: AIOKafkaConsumer = self._consumer or await asyncio.wait_for(
                    self._connect(), 30
                )
                fetched = await consumer.getmany(timeout_ms=1000)
                for records in fetched.values():
                    for record in records:
                        self.apply(record.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.should_stop:
                    return
                # The inbox must never stop the worker: pages keep what they have meanwhile.
                log.warning("inbox: reading %s failed (%r); retrying", self._topic, exc)
                await self.sleep(2.0)

    async def on_stop(self) -> None:
        self._subscribers.close()

    async def on_shutdown(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


def serve_inbox(
    app: faust.App,
    *,
    settings: Settings,
    kafka: KafkaConnection,
    model: Callable[[], LeadModel],
    producer: Sender,
    clock: Callable[[], datetime],
) -> InboxFeed:
    """Mount the inbox on the worker's web server; the feed returned is for the app to run."""
    assert settings.inbox_secret is not None
    topics = Topics(settings.topic_prefix)
    inbox = Inbox()
    subscribers = Subscribers()
    mount_on_faust(
        app,
        InboxHandler(
            secret=settings.inbox_secret.get_secret_value(),
            model=model,
            inbox=inbox,
            subscribers=subscribers,
            topic=topics.feedback,
            producer=producer,
            clock=clock,
        ),
    )
    return InboxFeed(
        topic=topics.alerts,
        kafka=kafka,
        inbox=inbox,
        subscribers=subscribers,
        fetch_wait_ms=settings.fetch_wait_ms,
    )


def add_routes(app: web.Application, handler: InboxHandler) -> None:
    """Serve the inbox on a plain aiohttp app."""
    app.router.add_get(PAGE_ROUTE, handler.page)
    app.router.add_get(EVENTS_ROUTE, handler.events)
    app.router.add_post(FEEDBACK_ROUTE, handler.feedback)
    app.on_shutdown.append(handler.on_shutdown)


def mount_on_faust(app: faust.App, handler: InboxHandler) -> None:
    """Serve the inbox on the worker's web server (the one of /metrics)."""

    @app.page(PAGE_ROUTE)
    class InboxPage(View):
        async def get(self, request: Request, **_: Any) -> Response:
            return cast(Response, await handler.page(cast(web.Request, request)))

    @app.page(EVENTS_ROUTE)
    class InboxEvents(View):
        async def get(self, request: Request, **_: Any) -> Response:
            return cast(Response, await handler.events(cast(web.Request, request)))

    @app.page(FEEDBACK_ROUTE)
    class InboxFeedback(View):
        async def post(self, request: Request, **_: Any) -> Response:
            return cast(Response, await handler.feedback(cast(web.Request, request)))

    cast(AiohttpWeb, app.web).web_app.on_shutdown.append(handler.on_shutdown)


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return orjson.dumps(value).decode().replace("<", "\\u003c")


def _page(rep: Rep, *, token: str, nonce: str) -> str:
    reasons = [[r, _REASON_LABELS.get(r, r.replace("_", " "))] for r in REJECT_REASONS]
    return (
        _PAGE.replace("__NONCE__", nonce)
        .replace("__REP_NAME__", html.escape(rep.name))
        .replace("__TOKEN__", _script_json(token))
        .replace("__REASONS__", _script_json(reasons))
    )


_DENIED_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<title>Inbox link not valid</title></head>
<body><h1>This inbox link is not valid.</h1>
<p>It may be mistyped or cut short, or the links were renewed.
Ask your Leadstream administrator for a new link.</p></body></html>
"""

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Inbox · __REP_NAME__</title>
<style nonce="__NONCE__">
  :root { font: 15px/1.45 system-ui, sans-serif; color: #1c2430; background: #f4f6f9; }
  [hidden] { display: none !important; }
  body { margin: 0 auto; max-width: 46rem; padding: 1rem; }
  header { display: flex; align-items: baseline; justify-content: space-between; gap: 1rem; }
  h1 { font-size: 1.3rem; margin: .5rem 0 1rem; }
  #status { font-size: .85rem; color: #6b7686; }
  #status[data-state="live"] { color: #1a7f37; }
  #status[data-state="closed"] { color: #b42318; }
  ol { list-style: none; margin: 0; padding: 0; }
  .alert { background: #fff; border: 1px solid #dfe3ea; border-radius: 8px; padding: .8rem 1rem;
           margin-bottom: .7rem; }
  .alert.fresh { border-color: #2f6feb; }
  .message { font-weight: 600; margin: 0 0 .2rem; font-size: 1.05rem; }
  .who, .meta { color: #4b5563; font-size: .9rem; }
  .actions { display: flex; flex-wrap: wrap; gap: .5rem; margin-top: .6rem; align-items: center; }
  button { font: inherit; border-radius: 6px; border: 1px solid #c5ccd6; background: #fff;
           padding: .3rem .9rem; cursor: pointer; }
  button:disabled { opacity: .5; cursor: default; }
  button.accept { background: #1a7f37; border-color: #1a7f37; color: #fff; }
  button.send-reject { background: #b42318; border-color: #b42318; color: #fff; }
  select, input { font: inherit; padding: .25rem; }
  .outcome { font-weight: 600; margin-top: .5rem; }
  .outcome.accepted { color: #1a7f37; }
  .outcome.rejected { color: #b42318; }
  .error { color: #b42318; margin-top: .4rem; }
</style>
</head>
<body>
<header>
  <h1>Inbox of <span id="rep-name">__REP_NAME__</span></h1>
  <span id="status" data-state="connecting">connecting…</span>
</header>
<p id="empty" hidden>No alerts yet: they appear here the moment a lead of yours is hot.</p>
<noscript><p>This page needs JavaScript to show alerts as they arrive.</p></noscript>
<ol id="alerts"></ol>
<template id="alert-template">
  <li class="alert">
    <p class="message"></p>
    <div class="who"></div>
    <div class="meta">score <span class="score"></span> · <span class="trigger"></span>
      · <time class="event-at"></time></div>
    <div class="actions">
      <button type="button" class="accept">Accept</button>
      <button type="button" class="reject">Reject…</button>
      <span class="reject-form" hidden>
        <select class="reason" aria-label="Why"><option value="">Why?</option></select>
        <input class="reason-text" type="text" maxlength="500" placeholder="In a few words"
               aria-label="Reason" hidden>
        <button type="button" class="send-reject" disabled>Reject lead</button>
        <button type="button" class="cancel">Cancel</button>
      </span>
    </div>
    <div class="outcome" hidden></div>
    <div class="error" hidden></div>
  </li>
</template>
<script nonce="__NONCE__">
"use strict";
const TOKEN = __TOKEN__;
const REASONS = __REASONS__;
const LABELS = Object.fromEntries(REASONS);
const list = document.getElementById("alerts");
const template = document.getElementById("alert-template");
const statusLine = document.getElementById("status");
let loaded = false;  // the recent alerts are in; later ones are marked as new

function setStatus(state, text) {
  statusLine.dataset.state = state;
  statusLine.textContent = text;
}

function showDecision(li, decision) {
  li.querySelector(".actions").hidden = true;
  li.querySelector(".error").hidden = true;
  const outcome = li.querySelector(".outcome");
  outcome.hidden = false;
  outcome.className = "outcome " + decision.status;
  if (decision.status === "accepted") {
    outcome.textContent = "Accepted";
  } else {
    const why = decision.reason === "other" ? decision.reason_text : LABELS[decision.reason];
    outcome.textContent = "Rejected: " + (why || decision.reason);
  }
}

async function answer(li, alert, body) {
  const error = li.querySelector(".error");
  const buttons = li.querySelectorAll(".actions button");
  buttons.forEach(b => { b.disabled = true; });
  error.hidden = true;
  try {
    const response = await fetch("inbox/feedback", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(Object.assign(
        {token: TOKEN, lead_id: alert.lead_id, alert_id: alert.alert_id}, body)),
    });
    const result = await response.json();
    if (!response.ok) throw new Error(result.message || ("error " + response.status));
    showDecision(li, result.decision);
  } catch (e) {
    error.textContent = "Not saved: " + e.message;
    error.hidden = false;
    buttons.forEach(b => { b.disabled = false; });
    updateRejectButton(li);
  }
}

function updateRejectButton(li) {
  const reason = li.querySelector(".reason").value;
  const text = li.querySelector(".reason-text");
  text.hidden = reason !== "other";
  li.querySelector(".send-reject").disabled =
    !reason || (reason === "other" && !text.value.trim());
}

function render(alert) {
  const existing = Array.from(list.children).find(li => li.dataset.alertId === alert.alert_id);
  if (existing) {
    if (alert.decision) showDecision(existing, alert.decision);
    return;
  }
  const li = template.content.firstElementChild.cloneNode(true);
  li.dataset.alertId = alert.alert_id;
  li.dataset.leadId = alert.lead_id;
  li.querySelector(".message").textContent = alert.message;
  li.querySelector(".who").textContent =
    [alert.email, alert.company].filter(Boolean).join(" · ") || "(not identified yet)";
  li.querySelector(".score").textContent = String(alert.score);
  li.querySelector(".trigger").textContent = alert.trigger;
  const when = li.querySelector(".event-at");
  when.dateTime = alert.event_at;
  when.textContent = new Date(alert.event_at).toLocaleString();
  const select = li.querySelector(".reason");
  for (const [value, label] of REASONS) select.add(new Option(label, value));
  const form = li.querySelector(".reject-form");
  li.querySelector(".accept").addEventListener(
    "click", () => answer(li, alert, {status: "accepted"}));
  li.querySelector(".reject").addEventListener("click", () => {
    form.hidden = false;
    li.querySelector(".reject").hidden = true;
    select.focus();
  });
  li.querySelector(".cancel").addEventListener("click", () => {
    form.hidden = true;
    li.querySelector(".reject").hidden = false;
  });
  select.addEventListener("change", () => updateRejectButton(li));
  li.querySelector(".reason-text").addEventListener("input", () => updateRejectButton(li));
  li.querySelector(".send-reject").addEventListener("click", () => answer(li, alert, {
    status: "rejected", reason: select.value,
    reason_text: select.value === "other" ? li.querySelector(".reason-text").value : null,
  }));
  if (alert.decision) showDecision(li, alert.decision);
  if (loaded) li.classList.add("fresh");
  list.prepend(li);
  document.getElementById("empty").hidden = true;
}

const events = new EventSource("inbox/events?token=" + encodeURIComponent(TOKEN));
events.addEventListener("open", () => setStatus("live", "live"));
events.addEventListener("alert", e => render(JSON.parse(e.data)));
events.addEventListener("ready", () => {
  loaded = true;
  document.getElementById("empty").hidden = list.children.length > 0;
});
events.addEventListener("error", () => {
  if (events.readyState === EventSource.CLOSED) {
    setStatus("closed", "disconnected: reload the page (or ask for a new link)");
  } else {
    setStatus("reconnecting", "reconnecting…");
  }
});
</script>
</body>
</html>
"""
