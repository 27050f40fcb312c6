"""The `leadstream` command: broker, worker, ingest, notifier, send, run, model tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from streams.event_loop import EventLoopUnavailable, loop_name, use_event_loop

if TYPE_CHECKING:
    from streams.settings import Settings

__all__ = ["main", "setup_logging", "tune_gc", "tune_process"]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    result: int = args.handler(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadstream", description="Real-time lead scoring and routing on Kafka."
    )
    sub = parser.add_subparsers(dest="command")

    broker = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu)")
    broker.add_argument("--port", type=int, default=9092)
    broker.set_defaults(handler=_cmd_broker)

    worker = sub.add_parser("worker", help="run the Faust worker")
    worker.add_argument("--broker", help="broker URL (env LEADSTREAM_BROKER)")
    worker.add_argument("--model", type=Path, help="lead model file (env LEADSTREAM_MODEL_PATH)")
    worker.add_argument("--web-port", type=int, help="port of /metrics (default 6066)")
    worker.set_defaults(handler=_cmd_worker)

    ingest = sub.add_parser(
        "ingest", help="serve the Segment HTTP Tracking API alone (/v1/batch, /v1/track, ...)"
    )
    ingest.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    ingest.add_argument("--broker", help="broker URL (env LEADSTREAM_BROKER)")
    ingest.set_defaults(handler=_cmd_ingest)

    notifier = sub.add_parser(
        "notifier", help="deliver rep.alerts to each rep's Slack, webhook and email channels"
    )
    notifier.add_argument("--broker", help="broker URL (env LEADSTREAM_BROKER)")
    notifier.add_argument(
        "--channels", type=Path, help="channels file (env LEADSTREAM_CHANNELS_FILE)"
    )
    notifier.add_argument("--web-port", type=int, help="port of /metrics (default 6067)")
    notifier.set_defaults(handler=_cmd_notifier)

    send = sub.add_parser("send", help="produce a JSONL file of Segment messages")
    send.add_argument("file", type=Path)
    send.add_argument("--broker", help="broker URL (env LEADSTREAM_BROKER)")
    send.add_argument(
        "--raw", action="store_true", help="send every line unchecked (bad ones reach the DLQ)"
    )
    send.set_defaults(handler=_cmd_send)

    run = sub.add_parser("run", help="embedded broker + worker + demo scenario, showing alerts")
    run.add_argument("--port", type=int, default=9092, help="broker port (a free one if taken)")
    run.add_argument(
        "--web-port", type=int, default=6066, help="/metrics port (a free one if taken)"
    )
    run.add_argument("--scenario", type=Path, help="JSONL to replay (default: bundled demo)")
    run.add_argument("--exit-after-alerts", type=int, metavar="N", help="stop after N alerts")
    run.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    run.set_defaults(handler=_cmd_run)

    inbox_link = sub.add_parser("inbox-link", help="print a rep's signed rep inbox link")
    inbox_link.add_argument("rep", metavar="REP_ID", help="a rep id of the lead model")
    inbox_link.add_argument(
        "--model", type=Path, help="lead model file (env LEADSTREAM_MODEL_PATH)"
    )
    inbox_link.set_defaults(handler=_cmd_inbox_link)

    model = sub.add_parser("model", help="lead model tools")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    check = model_sub.add_parser("check", help="validate a lead model file")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=_cmd_model_check)
    replay = model_sub.add_parser(
        "replay", help="what-if: run lead models over an event log (no broker) and compare"
    )
    replay.add_argument("--events", type=Path, required=True, help="JSONL of Segment messages")
    replay.add_argument("--model", type=Path, required=True, help="the lead model file (A)")
    replay.add_argument("--compare", type=Path, help="a second lead model file (B)")
    replay.add_argument("--feedback", type=Path, help="JSONL of sales outcomes (precision)")
    replay.add_argument("--json", action="store_true", help="print JSON instead of tables")
    replay.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress line on stderr (default: when stderr is a terminal)",
    )
    replay.set_defaults(handler=_cmd_model_replay)
    publish = model_sub.add_parser(
        "publish", help="validate a lead model file and switch running workers to it"
    )
    publish.add_argument("file", type=Path)
    publish.add_argument("--broker", help="broker URL (env LEADSTREAM_BROKER)")
    publish.add_argument(
        "--rescore",
        action="store_true",
        help="also replay each lead's stored scoring history through the new model",
    )
    publish.set_defaults(handler=_cmd_model_publish)

    forget = sub.add_parser(
        "forget", help="erase a person: their lead, identifiers and merged leads (GDPR/APPI)"
    )
    who = forget.add_mutually_exclusive_group(required=True)
    who.add_argument("email", nargs="?", metavar="EMAIL", help="the person's email address")
    who.add_argument("--user-id", help="the person's userId instead of an email")
    forget.add_argument("--reason", default="", help="why, e.g. a ticket number (on the answer)")
    forget.add_argument("--broker", help="broker URL (env LEADSTREAM_BROKER)")
    forget.add_argument(
        "--no-wait", action="store_true", help="publish the request; do not wait for the answer"
    )
    forget.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="longest wait for the answer"
    )
    forget.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress line on stderr (default: when stderr is a terminal)",
    )
    forget.set_defaults(handler=_cmd_forget)

    imports = sub.add_parser("import", help="import CSV files: CRM accounts, offline events")
    import_sub = imports.add_subparsers(dest="import_command", required=True)
    accounts = import_sub.add_parser("accounts", help="CRM accounts to crm.accounts")
    events = import_sub.add_parser(
        "events", help="trade show, seminar or business card lists to engagement.raw"
    )
    for cmd in (accounts, events):
        cmd.add_argument("file", type=Path, help="CSV (UTF-8, UTF-8 with BOM, or Shift_JIS)")
        cmd.add_argument("--mapping", type=Path, help="YAML: our fields -> CSV column names")
        cmd.add_argument("--broker", help="broker URL (env LEADSTREAM_BROKER)")
        cmd.add_argument("--dry-run", action="store_true", help="check and report; send nothing")
        cmd.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            help="progress bar on stderr (default: when stderr is a terminal)",
        )
        cmd.set_defaults(handler=_cmd_import)
    events.add_argument(
        "--source",
        required=True,
        help="trade_show, seminar, webinar, business_card (others: `event:` in the mapping)",
    )
    events.add_argument(
        "--date",
        type=_iso_date,
        help="YYYY-MM-DD for rows without a date (or a file without a date column)",
    )

    explain = sub.add_parser(
        "explain", help="one lead's whole story: events, scores, routing, SLA, feedback"
    )
    explain.add_argument("lead_id", help="a lead id from any record (ld_...)")
    explain.add_argument("--broker", help="broker URL (env LEADSTREAM_BROKER)")
    explain.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress on stderr (default: when stderr is a terminal)",
    )
    explain.set_defaults(handler=_cmd_explain)

    report = sub.add_parser("report", help="reports from what Leadstream wrote to its topics")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    quality = report_sub.add_parser(
        "quality", help="duplicates merged, unknown timelines, free mail, unmatched, DLQ"
    )
    quality.add_argument("--since", default="7d", help="ISO date/time or a span: 7d, 12h")
    quality.add_argument("--until", help="ISO date/time (default: now)")
    quality.add_argument("--broker", help="broker URL (env LEADSTREAM_BROKER)")
    quality.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress on stderr (default: when stderr is a terminal)",
    )
    quality.set_defaults(handler=_cmd_report_quality)
    kpi = report_sub.add_parser(
        "kpi", help="funnel, speed to lead, SLA breaches, won revenue, attribution and ROI"
    )
    kpi.add_argument("--since", default="30d", help="ISO date/time or a span: 30d, 12h")
    kpi.add_argument("--until", help="ISO date/time (default: now)")
    kpi.add_argument("--by", choices=("source", "campaign", "rep", "team"), help="group by")
    kpi.add_argument("--costs", type=Path, help="costs.csv: source,campaign,period,amount")
    kpi.add_argument(
        "--attribution",
        choices=("first", "last", "linear"),
        default="linear",
        help="attribution model of ROI and revenue by campaign (default: linear)",
    )
    kpi.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained page")
    kpi.add_argument("--broker", help="broker URL (env LEADSTREAM_BROKER)")
    kpi.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress on stderr (default: when stderr is a terminal)",
    )
    kpi.set_defaults(handler=_cmd_report_kpi)

    checklist = sub.add_parser(
        "checklist", help="the 15-item sales and marketing alignment checklist, with evidence"
    )
    checklist.add_argument("--since", default="30d", help="ISO date/time or a span: 30d, 12h")
    checklist.add_argument("--until", help="ISO date/time (default: now)")
    checklist.add_argument(
        "--model", type=Path, help="lead model file (default: the one published on lead.model)"
    )
    checklist.add_argument("--broker", help="broker URL (env LEADSTREAM_BROKER)")
    checklist.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress on stderr (default: when stderr is a terminal)",
    )
    checklist.set_defaults(handler=_cmd_checklist)

    core = sub.add_parser("core", help="the scoring core compiled with mypyc: build, status")
    core.add_argument("core_command", choices=("build", "status"))
    core.set_defaults(handler=_cmd_core)
    return parser


def _settings(**overrides: Any) -> Any:
    from streams.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            # A check across settings (Kafka security) names the settings in its message.
            where = f"setting LEADSTREAM_{field.upper()}: " if field else ""
            print(f"leadstream: {where}{msg}", file=sys.stderr)
        raise SystemExit(2) from exc


def _intake_mode(settings: Settings, cpus: float) -> str:
    """The start-up line that says where the intake runs and why."""
    own = settings.intake_in_own_process(cpus)
    where = "in a process of its own" if own else "in the worker's process"
    if settings.intake_process != "auto":
        return f"{where} (LEADSTREAM_INTAKE_PROCESS={str(own).lower()})"
    why = f"{cpus:g} CPU{'s' if cpus != 1 else ''} available"
    return f"{where} (LEADSTREAM_INTAKE_PROCESS=auto: {why}, a child from 2)"


def _use_event_loop(settings: Settings) -> None:
    """The event loop the command's loop will be (`LEADSTREAM_EVENT_LOOP`)."""
    try:
        use_event_loop(settings.event_loop)
    except EventLoopUnavailable as exc:
        print(f"leadstream: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _kafka(settings: Settings) -> Any:
    """The connection every Kafka client of this command uses (SASL, TLS files read now)."""
    from streams.kafka_connection import kafka_connection

    try:
        return kafka_connection(settings)
    except (ValueError, OSError) as exc:
        print(f"leadstream: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _cmd_core(args: argparse.Namespace) -> int:
    from streams.native import run_core

    return run_core(args.core_command)


def _cmd_broker(args: argparse.Namespace) -> int:
    from streams.broker import EmbeddedBroker, port_is_free

    broker = EmbeddedBroker(args.port)
    if not port_is_free(args.port):
        print(f"leadstream: port {args.port} is already in use", file=sys.stderr)
        return 1
    print(f"embedded broker (Tansu, memory storage) on {broker.bootstrap}", flush=True)
    command = broker.command()
    os.execv(command[0], command)  # noqa: S606 — the bundled broker binary, our own arguments
    return 0  # pragma: no cover


def _cmd_worker(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from schemas.model_record import text_sha256
    from streams import CORE
    from streams.app import Worker, create_app
    from streams.construct import NOT_IN_C, core_line
    from streams.cpus import available_cpus
    from streams.lead_model import ModelError
    from streams.logs import logging_config
    from streams.model_feed import ModelHolder, read_model
    from streams.table_store import StoreUnavailable, check_store

    settings = _settings(broker=args.broker, model_path=args.model, web_port=args.web_port)
    try:
        settings.core_limits()
    except ValueError as exc:
        print(f"leadstream: {exc}", file=sys.stderr)
        return 2
    try:
        model, text = read_model(settings.model_path)
    except ModelError as exc:
        print(f"leadstream: the lead model is invalid:\n{exc}", file=sys.stderr)
        return 2
    models = ModelHolder(model, sha256=text_sha256(text))
    try:
        check_store(settings.store)
    except StoreUnavailable as exc:
        print(f"leadstream: {exc}", file=sys.stderr)
        return 2
    kafka = _kafka(settings)
    _use_event_loop(settings)
    cpus = available_cpus()
    app = create_app(
        settings=settings,
        model=model,
        registry=CollectorRegistry(),
        models=models,
        kafka=kafka,
        cpus=cpus,
    )
    print(
        f"leadstream worker: model file {model.name} v{model.version} (a model published "
        f"on lead.model takes precedence), broker {kafka.describe()}, "
        f"metrics http://127.0.0.1:{settings.web_port}/metrics",
        flush=True,
    )
    where = f" under {settings.data_dir.resolve()}" if settings.store == "rocksdb" else ""
    print(f"store: {settings.store}{where}", flush=True)
    print(f"core: {core_line(CORE, NOT_IN_C)}", flush=True)
    print(f"intake: {_intake_mode(settings, cpus)}", flush=True)
    if settings.write_keys:
        url = f"http://127.0.0.1:{settings.web_port}/v1/batch"
        print(f"ingest: Segment HTTP API on {url}", flush=True)
    else:
        print("ingest: off, no write keys (set LEADSTREAM_WRITE_KEYS to serve /v1/*)", flush=True)
    if settings.inbox_secret is not None:
        print(
            f"inbox: rep inbox on {settings.inbox_base_url()}/inbox "
            "(a rep's link: leadstream inbox-link REP_ID)",
            flush=True,
        )
    else:
        print("inbox: off, no secret (set LEADSTREAM_INBOX_SECRET to serve /inbox)", flush=True)
    tune_process()
    worker = Worker(
        app,
        loglevel=settings.log_level.upper(),
        logging_config=logging_config(log_format=settings.log_format, level=settings.log_level),
        quiet=settings.log_format == "json",  # no banner: stdout carries JSON lines only
    )
    print(f"event loop: {loop_name(worker.loop)}", flush=True)
    # Faust's start-up spinner, kept at WARNING and above, sets the root logger to DEBUG so
    # that it can spin on every record: every debug call of aiokafka then builds a LogRecord
    # (a tenth of the worker's CPU at 1,000 events/s). The level is the operator's choice.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0  # pragma: no cover


def setup_logging(settings: Settings) -> None:
    """Logging as the settings say (format and level), for a process's entry point."""
    import logging.config

    from streams.logs import logging_config

    logging.config.dictConfig(
        logging_config(log_format=settings.log_format, level=settings.log_level)
    )


def tune_process() -> None:
    """What a process that scores events does once its modules are imported and its app
    built: our model classes read their attributes as plain classes do
    (`streams.construct.plain_attributes`), and `tune_gc`."""
    from streams.construct import plain_attributes

    plain_attributes()
    tune_gc()


def tune_gc() -> None:
    """Collect cycles less often: the worker allocates millions of short-lived, acyclic
    objects (events, state copies, records), and CPython's default first-generation
    threshold (700) made the cyclic collector a third of the scoring cost. What exists now
    (modules, the app, the model) is frozen out of every future collection."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _cmd_ingest(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from prometheus_client import CollectorRegistry

    from streams.ingest_http import IngestStartError, serve_ingest

    settings = _settings(broker=args.broker)
    if not settings.write_keys:
        print(
            "leadstream: no write keys: set LEADSTREAM_WRITE_KEYS (comma-separated); "
            "the ingest does not run open",
            file=sys.stderr,
        )
        return 2
    kafka = _kafka(settings)
    _use_event_loop(settings)
    setup_logging(settings)
    # aiokafka logs each failed connection attempt; the one line below says it all.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    def ready(url: str) -> None:
        print(
            f"leadstream ingest: {url}/v1/batch (and /v1/track, /page, /identify, /group) "
            f"-> {settings.broker}; metrics {url}/metrics; "
            f"event loop {loop_name(asyncio.get_running_loop())}",
            flush=True,
        )

    try:
        asyncio.run(
            serve_ingest(
                settings,
                kafka=kafka,
                host=settings.web_host,
                port=args.port,
                registry=CollectorRegistry(),
                clock=lambda: datetime.now(UTC),
                on_ready=ready,
            )
        )
    except IngestStartError as exc:
        print(f"leadstream: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_notifier(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from prometheus_client import CollectorRegistry

    from streams.notifier import NotifierStartError, serve_notifier
    from streams.notify import ChannelsError, load_channels

    settings = _settings(
        broker=args.broker, channels_file=args.channels, notifier_web_port=args.web_port
    )
    if settings.channels_file is None:
        print(
            "leadstream: no channels file: pass --channels FILE or set LEADSTREAM_CHANNELS_FILE",
            file=sys.stderr,
        )
        return 2
    try:
        config = load_channels(settings.channels_file, env=os.environ)
    except ChannelsError as exc:
        print(f"leadstream: the channels file is invalid:\n{exc}", file=sys.stderr)
        return 2
    kafka = _kafka(settings)
    _use_event_loop(settings)
    setup_logging(settings)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    channels = config.channels()

    def ready(url: str) -> None:
        print(
            f"leadstream notifier: {len(config.reps)} reps, {len(channels)} channels, "
            f"{settings.broker}; metrics {url}/metrics; "
            f"event loop {loop_name(asyncio.get_running_loop())}",
            flush=True,
        )

    try:
        asyncio.run(
            serve_notifier(
                settings,
                config,
                kafka=kafka,
                host=settings.web_host,
                port=settings.notifier_web_port,
                registry=CollectorRegistry(),
                clock=lambda: datetime.now(UTC),
                on_ready=ready,
            )
        )
    except NotifierStartError as exc:
        print(f"leadstream: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # logged with its traceback; a restart re-reads the batch
        print(f"leadstream: the notifier stopped: {exc!r}", file=sys.stderr)
        return 1
    print("leadstream notifier: stopped", flush=True)
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    from streams.kafka_io import produce
    from streams.send import prepare_lines
    from streams.topics import Topics

    settings = _settings(broker=args.broker)
    kafka = _kafka(settings)
    try:
        with args.file.open("rb") as fh:
            prepared = prepare_lines(fh, validate=not args.raw)
    except OSError as exc:
        print(f"leadstream: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for bad in prepared.bad:
        print(f"{args.file}:{bad}", file=sys.stderr)
    topic = Topics(settings.topic_prefix).raw
    try:
        sent = asyncio.run(produce(kafka, topic, prepared.records))
    except Exception as exc:  # connection refused, unknown host, timeouts
        print(
            f"leadstream: cannot send to {settings.broker}: {kafka.failure(exc)}", file=sys.stderr
        )
        return 1
    print(f"sent {sent}, rejected {len(prepared.bad)}, blank {prepared.blank} -> {topic}")
    return 1 if prepared.bad else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from streams.demo_run import run_demo

    return run_demo(
        port=args.port,
        web_port=args.web_port,
        scenario=args.scenario,
        exit_after_alerts=args.exit_after_alerts,
        timeout_s=args.timeout,
    )


def _cmd_inbox_link(args: argparse.Namespace) -> int:
    from streams.inbox import inbox_url, token_for
    from streams.lead_model import ModelError, load_model

    settings = _settings(model_path=args.model)
    if settings.inbox_secret is None:
        print(
            "leadstream: no inbox secret: set LEADSTREAM_INBOX_SECRET (the worker's) to sign links",
            file=sys.stderr,
        )
        return 2
    try:
        model = load_model(settings.model_path)
    except ModelError as exc:
        print(f"leadstream: the lead model is invalid:\n{exc}", file=sys.stderr)
        return 2
    if model.rep(args.rep) is None:
        known = ", ".join(r.id for r in model.reps)
        print(
            f"leadstream: no rep {args.rep!r} in {settings.model_path} (reps: {known})",
            file=sys.stderr,
        )
        return 2
    expires_at = datetime.now(UTC) + timedelta(days=settings.inbox_link_days)
    token = token_for(args.rep, settings.inbox_secret.get_secret_value(), expires_at=expires_at)
    print(inbox_url(settings.inbox_base_url(), token))
    print(
        f"expires {expires_at.replace(microsecond=0).isoformat().replace('+00:00', 'Z')} "
        f"(LEADSTREAM_INBOX_LINK_DAYS={settings.inbox_link_days:g})",
        file=sys.stderr,
    )
    return 0


def _cmd_model_check(args: argparse.Namespace) -> int:
    from streams.lead_model import ModelError, load_model

    try:
        model = load_model(args.file)
    except ModelError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"ok: {model.summary()}")
    return 0


def _cmd_model_replay(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from streams.construct import plain_attributes
    from streams.replay import run_command

    settings = _settings()
    plain_attributes()
    return run_command(
        events=args.events,
        model=args.model,
        compare=args.compare,
        feedback=args.feedback,
        as_json=args.json,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        limits=settings.core_limits(),
        now=datetime.now(UTC),
    )


def _cmd_model_publish(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from streams.lead_model import ModelError
    from streams.model_feed import publish, published_model, read_model
    from streams.topics import Topics

    settings = _settings(broker=args.broker)
    try:
        model, text = read_model(args.file)
    except ModelError as exc:
        print(exc, file=sys.stderr)
        return 1
    record = published_model(
        model, text, rescore=args.rescore, now=datetime.now(UTC), by=_user_at_host()
    )
    topic = Topics(settings.topic_prefix).model
    kafka = _kafka(settings)
    # aiokafka logs each failed connection attempt; the one line below says it all.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        asyncio.run(
            asyncio.wait_for(
                publish(kafka, topic, record, replication=settings.replication_factor),
                timeout=_PUBLISH_TIMEOUT_S,
            )
        )
    except Exception as exc:  # connection refused, unknown host, timeouts
        print(
            f"leadstream: cannot publish to {settings.broker}: {kafka.failure(exc)}",
            file=sys.stderr,
        )
        return 1
    rescore = "; they rescore stored leads with it" if args.rescore else ""
    print(
        f"published {model.name} v{model.version} to {topic}; "
        f"running workers switch within seconds{rescore}"
    )
    return 0


#: Longest a publish may take, broker connection and acknowledgement included.
_PUBLISH_TIMEOUT_S = 30.0


def _user_at_host() -> str | None:
    import getpass
    import socket

    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (OSError, KeyError):  # no user name in the environment or the password database
        return None


def _iso_date(text: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from exc


def _cmd_import(args: argparse.Namespace) -> int:
    import re
    from datetime import UTC, datetime

    from streams.import_cli import ImportTarget, run_import
    from streams.topics import Topics

    kind = args.import_command
    source = getattr(args, "source", None)
    if source is not None and not re.fullmatch(r"[a-z0-9_]{1,64}", source):
        print(
            f"leadstream: --source: lower-case letters, digits and _ only: {source!r}",
            file=sys.stderr,
        )
        return 2
    settings = _settings(broker=args.broker)
    topics = Topics(settings.topic_prefix)
    return run_import(
        kind,
        file=args.file,
        mapping=args.mapping,
        target=ImportTarget(
            broker=settings.broker,
            kafka=_kafka(settings),
            topic=topics.crm_accounts if kind == "accounts" else topics.raw,
            replication=settings.replication_factor,
        ),
        source=source,
        default_date=getattr(args, "date", None),
        dry_run=args.dry_run,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        now=datetime.now(UTC),
        out=sys.stdout,
        err=sys.stderr,
    )


def _time_range(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """--since/--until of the report commands as datetimes; None (said on stderr) if bad."""
    from datetime import UTC, datetime

    from streams.quality_cli import parse_when

    now = datetime.now(UTC)
    try:
        since = parse_when(args.since, now=now)
        return since, parse_when(args.until, now=now) if args.until else now
    except ValueError as exc:
        print(f"leadstream: --since/--until: {exc}", file=sys.stderr)
        return None


def _cmd_report_quality(args: argparse.Namespace) -> int:
    from streams.quality_cli import run_quality
    from streams.topics import Topics

    settings = _settings(broker=args.broker)
    span = _time_range(args)
    if span is None:
        return 2
    since, until = span
    return run_quality(
        broker=settings.broker,
        kafka=_kafka(settings),
        topics=Topics(settings.topic_prefix),
        since=since,
        until=until,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
    )


def _cmd_report_kpi(args: argparse.Namespace) -> int:
    from streams.kpi_cli import run_kpi
    from streams.topics import Topics

    settings = _settings(broker=args.broker)
    span = _time_range(args)
    if span is None:
        return 2
    since, until = span
    return run_kpi(
        broker=settings.broker,
        kafka=_kafka(settings),
        topics=Topics(settings.topic_prefix),
        since=since,
        until=until,
        by=args.by,
        attribution=args.attribution,
        costs_file=args.costs,
        html=args.html,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
    )


def _cmd_forget(args: argparse.Namespace) -> int:
    from streams.forget_cli import ForgetTarget, run_forget
    from streams.topics import Topics

    settings = _settings(broker=args.broker)
    return run_forget(
        email=args.email,
        user_id=args.user_id,
        reason=args.reason,
        target=ForgetTarget(
            broker=settings.broker,
            kafka=_kafka(settings),
            topics=Topics(settings.topic_prefix),
            partitions=settings.partitions,
            replication=settings.replication_factor,
        ),
        wait=not args.no_wait,
        timeout_s=args.timeout,
        now=datetime.now(UTC),
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
    )


def _cmd_explain(args: argparse.Namespace) -> int:
    from streams.explain_cli import run_explain
    from streams.topics import Topics

    settings = _settings(broker=args.broker)
    return run_explain(
        args.lead_id,
        broker=settings.broker,
        kafka=_kafka(settings),
        topics=Topics(settings.topic_prefix),
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
    )


def _cmd_checklist(args: argparse.Namespace) -> int:
    from streams.checklist_cli import run_checklist, span_words
    from streams.topics import Topics

    settings = _settings(broker=args.broker, model_path=args.model)
    span = _time_range(args)
    if span is None:
        return 2
    since, until = span
    return run_checklist(
        broker=settings.broker,
        kafka=_kafka(settings),
        topics=Topics(settings.topic_prefix),
        model_path=settings.model_path,
        model_given=args.model is not None,
        since=since,
        until=until,
        span=span_words(args.since, args.until),
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
    )
