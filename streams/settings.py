"""Runtime settings: one frozen object, read once at the entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    Field,
    FilePath,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streams.event_loop import EventLoopChoice
from streams.lead_model import DEFAULT_MODEL_PATH

if TYPE_CHECKING:
    from streams.leads import Limits

__all__ = ["SaslMechanism", "SecurityProtocol", "Settings"]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

#: Secrets that may be read from a file instead (`LEADSTREAM_<NAME>_FILE`): a Kubernetes or
#: Docker secret mounted as a file never passes through the environment.
_SECRET_FILES = {
    "kafka_sasl_password": "kafka_sasl_password_file",
    "kafka_ssl_key_password": "kafka_ssl_key_password_file",
}


#: `LEADSTREAM_INTAKE_PROCESS=auto` runs the intake in a child process from this many CPUs:
#: with fewer the child takes turns with the worker on one core and only adds its cost.
_INTAKE_PROCESS_MIN_CPUS = 2.0
_BOOL = TypeAdapter(bool)


class Settings(BaseSettings):
    """Every knob, with defaults right for Apache Kafka; environment prefix `LEADSTREAM_`."""

    model_config = SettingsConfigDict(env_prefix="LEADSTREAM_", frozen=True, extra="ignore")

    broker: str = Field(default="kafka://127.0.0.1:9092", description="Faust broker URL(s).")
    broker_flavor: Literal["kafka", "tansu"] = Field(
        default="kafka",
        description="'tansu' turns on the workarounds for the embedded broker (README).",
    )
    app_id: str = Field(default="leadstream", description="Consumer group and table prefix.")
    topic_prefix: str = ""
    partitions: int = Field(default=8, ge=1, description="Partitions of internal topics.")
    replication_factor: int = Field(default=1, ge=1)
    model_path: Path = DEFAULT_MODEL_PATH
    data_dir: Path = Path(".leadstream-data")
    store: Literal["memory", "rocksdb"] = Field(
        default="memory",
        description="Table store: 'memory' (tests, `make run`: a restart reads every changelog "
        "again) or 'rocksdb' (production: state on disk under data_dir, a restart reads only "
        "the changelog written since).",
    )

    # All interfaces: a container's port is reached from outside it (compose, k8s probes).
    web_host: str = "0.0.0.0"  # noqa: S104 — see above; LEADSTREAM_WEB_HOST narrows it
    web_port: int = Field(default=6066, ge=0, le=65535)

    # Kafka security (README: Kafka authentication and TLS): every client and Faust get it.
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        default="PLAIN", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* only)."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
    kafka_sasl_password_file: FilePath | None = Field(
        default=None, description="File holding the SASL password (instead of the variable)."
    )
    kafka_ssl_cafile: FilePath | None = Field(
        default=None,
        description="PEM of the CAs that sign the brokers' certificates (default: the system's).",
    )
    kafka_ssl_certfile: FilePath | None = Field(
        default=None, description="PEM of this client's certificate (mutual TLS)."
    )
    kafka_ssl_keyfile: FilePath | None = Field(
        default=None, description="PEM of this client's private key (mutual TLS)."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of the client's private key, if encrypted."
    )
    kafka_ssl_key_password_file: FilePath | None = Field(
        default=None, description="File holding the client key's password."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that the broker's certificate names the host dialled."
    )

    # Consumer tuning. On Apache Kafka a fetch returns as soon as data arrives, so the
    # wait only bounds idle polling; on Tansu every hop waits it out (README: Tansu gaps).
    intake_fetch_wait_ms: int = Field(
        default=500, ge=1, le=10_000, description="Fetch wait of the engagement.raw hop."
    )
    fetch_wait_ms: int = Field(
        default=500, ge=1, le=10_000, description="Fetch wait of the person-events hop (Faust)."
    )
    handover: bool = Field(
        default=True,
        description=(
            "Apply the intake's person-events records in-process when this worker scores "
            "their partition, without waiting for the consumer to fetch them (one hop fewer "
            "for an event's alert). Off: every record goes through the consumer."
        ),
    )
    intake_process: bool | Literal["auto"] = Field(
        default="auto",
        description=(
            "Run the intake (reading, validating and forwarding engagement.raw) in a child "
            "process of the worker, on another core than the scoring: more events per second "
            "where the worker has a second core (README, Performance). auto: when the "
            "process may use 2 CPUs or more (its cores, capped by its cgroup's quota)."
        ),
    )
    model_fetch_wait_ms: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Fetch wait of the lead.model feed: bounds how long a publish takes to apply.",
    )
    accounts_fetch_wait_ms: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Fetch wait of the crm.accounts feed: bounds how long a CRM change takes.",
    )
    accounts_catch_up_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest a starting worker reads crm.accounts before processing events.",
    )
    session_timeout_s: float = Field(default=30.0, gt=0)
    heartbeat_interval_s: float = Field(default=3.0, gt=0)
    recovery_stall_s: float = Field(
        default=15.0,
        gt=0,
        description=(
            "A table recovery with changelog records left to read and none applied for this "
            "long is checked: where its consumer is past records it never delivered, it seeks "
            "back to them (streams/recovery_watch.py)."
        ),
    )

    # Intake: most raw records validated and forwarded together.
    intake_batch_max: int = Field(default=5000, ge=1)
    producer_batch_bytes: int = Field(
        default=512 * 1024,
        ge=16 * 1024,
        le=1_000_000,
        description="Largest record batch the worker's producer builds per partition. aiokafka "
        "sends one request at a time to a broker, with at most one batch per partition in "
        "it, so a forward or flush of N bytes to one partition takes N / this many requests "
        "in a row. At most the topics' max.message.bytes (Kafka's default: 1 MB). Against "
        "aiokafka's 16 KiB, 512 KiB drains a flood on a running worker faster (6.7-7.8 s "
        "against 10.2 s) and a backlog a little faster (README, Performance).",
    )
    intake_commit_ms: int = Field(default=500, ge=0, description="Most often raw offsets commit.")
    # Write-behind of lead state: changed leads go to the changelog at most this often
    # per partition (and before the input they came from is acknowledged). A lead changed
    # several times in between is written once: at 200 ms the load test's 2,000-lead
    # backlog wrote ~2x the bytes of state that it read of events, at 1 s a third of that
    # (README, Architecture). Faust commits input offsets every 2.8 s either way.
    state_flush_ms: int = Field(
        default=1000,
        ge=1,
        description="How often changed leads go to the changelog (and contact updates to "
        "the accounts stage).",
    )
    sla_tick_ms: int = Field(
        default=1000, ge=50, le=60_000, description="How often hand-off SLA clocks are checked."
    )
    lead_cache_size: int = Field(default=20_000, ge=0, description="Decoded leads kept.")
    # Broker outages (streams/broker_watch.py).
    broker_check_s: float = Field(
        default=5.0, gt=0, le=300, description="How often the worker checks the broker."
    )
    broker_lost_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Unreachable this long, the worker exits for its supervisor to restart it.",
    )

    # Per-lead state bounds.
    dedupe_window: int = Field(default=32, ge=1, description="Recent messageIds kept per lead.")
    history_kept: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Recent events kept per lead: what `--rescore` replays and a hand-off shows.",
    )
    activity_retention_days: float = Field(
        default=0,
        ge=0,
        le=3650,
        description="Activity (each lead's event history) older than this many days by the "
        "lead's clock leaves the lead when it is next touched; 0: no time limit, only "
        "`history_kept`. Scores keep the engagement they counted.",
    )

    # Segment HTTP ingest (README: HTTP ingest). No keys: the worker does not serve it and
    # `leadstream ingest` refuses to start, rather than accept anyone's events.
    write_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Write keys accepted by the HTTP ingest; comma-separated in the environment.",
    )
    # Shared KPIs as metrics (README: Shared KPIs): the `source` label's values.
    kpi_sources: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="UTM sources the KPI metrics label by name (others are `other`); "
        "comma-separated in the environment. Empty: the first 20 sources a worker sees.",
    )
    ingest_max_body_bytes: int = Field(
        default=512 * 1024,
        ge=1024,
        le=900 * 1024,
        description="Largest request body, compressed and decompressed alike (Segment: 500 KB). "
        "Kept under Kafka's default 1 MB message limit, as one message may be this big.",
    )
    ingest_produce_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest an ingest request waits for the broker before answering 503 "
        "(under the 15 s Segment's SDKs wait).",
    )
    ingest_rate_per_s: float = Field(
        default=200.0,
        gt=0,
        description="Requests per second each write key may send, on average (per process); "
        "over it, 429 with Retry-After.",
    )
    ingest_burst: int = Field(
        default=1000,
        ge=1,
        description="Requests a write key may send at once before `ingest_rate_per_s` applies.",
    )

    # The rep inbox (README: Rep inbox). No secret: the worker does not serve it.
    inbox_secret: SecretStr | None = Field(
        default=None,
        description="Signs each rep's inbox link (16 characters or more); changing it revokes "
        "every link.",
    )
    inbox_link_days: float = Field(
        default=30.0,
        gt=0,
        le=366,
        description="How long a rep's inbox link opens (`leadstream inbox-link` prints the end).",
    )
    inbox_public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s?#]+$",
        description="Base of inbox links as reps reach the worker (default: "
        "http://127.0.0.1:<web port>).",
    )

    # Lead-to-account matching (streams/matching.py).
    account_match_min_confidence: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Least confidence of a fuzzy company-name match to an account.",
    )

    # Normalization (README: Normalization and qualification).
    phone_default_region: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{2}$",
        description="Region (JP, US) for national-format phone numbers of leads with no country.",
    )
    fiscal_year_start_month: int = Field(
        default=1, ge=1, le=12, description="1-12; 4 in Japan. 'This quarter', 今期 follow it."
    )
    email_rules_file: Path | None = Field(
        default=None,
        description="YAML of mail providers that ignore dots or +tags (default: the bundled set).",
    )

    # Rep notifications (README: Rep notifications): `leadstream notifier`.
    channels_file: Path | None = Field(
        default=None, description="YAML of each rep's channels and the SMTP server."
    )
    notifier_web_port: int = Field(
        default=6067, ge=0, le=65535, description="Port of the notifier's /metrics."
    )
    notifier_fetch_wait_ms: int = Field(default=500, ge=1, le=10_000)
    notifier_concurrency: int = Field(default=16, ge=1, description="Deliveries at once.")
    notifier_timeout_s: float = Field(default=10.0, gt=0, description="Per HTTP attempt.")
    notifier_max_attempts: int = Field(default=5, ge=1, le=20)
    notifier_backoff_base_s: float = Field(default=1.0, ge=0)
    notifier_backoff_max_s: float = Field(default=60.0, ge=0)
    notifier_circuit_failures: int = Field(
        default=5, ge=1, description="Consecutive failures that open a channel's circuit."
    )
    notifier_circuit_cooldown_s: float = Field(
        default=60.0, gt=0, description="How long an open circuit refuses before a trial."
    )
    notifier_dedupe_days: float = Field(
        default=8.0,
        gt=0,
        le=14,
        description="Deliveries remembered (at most once per alert and channel), and the "
        "oldest alert delivered; at most the 14 days rep.alerts.delivered keeps.",
    )

    event_loop: EventLoopChoice = Field(
        default="auto",
        description="The worker's, the ingest's and the notifier's asyncio event loop: "
        "'uvloop' (less CPU per event), 'asyncio' "
        "(the standard library's), or 'auto': uvloop where installed (not on Windows).",
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="'json': one JSON object per line (production); 'text' for humans. "
        "Email addresses are hashed in both.",
    )

    def core_limits(self) -> Limits:
        """The bounds and normalization defaults the pure core is given."""
        from streams.leads import Limits
        from streams.normalize import DEFAULT_EMAIL_RULES, load_email_rules

        rules = (
            load_email_rules(self.email_rules_file)
            if self.email_rules_file is not None
            else DEFAULT_EMAIL_RULES
        )
        return Limits(
            dedupe_window=self.dedupe_window,
            history_kept=self.history_kept,
            activity_retention_ms=int(self.activity_retention_days * 86_400_000),
            email_rules=rules,
            phone_region=self.phone_default_region,
            fiscal_year_start_month=self.fiscal_year_start_month,
        )

    @field_validator("write_keys", "kpi_sources", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            value = [v.strip() if isinstance(v, str) else v for v in value]
            value = tuple(v for v in value if v != "")
        return value

    @field_validator("intake_process", mode="before")
    @classmethod
    def _true_false_or_auto(cls, value: Any) -> Any:
        # One message for a bad value, not one per member of the union; the booleans are
        # pydantic's own (true/false, 1/0, yes/no, on/off, ...).
        if isinstance(value, str):
            if value.strip().lower() == "auto":
                return "auto"
            try:
                return _BOOL.validate_python(value)
            except ValidationError:
                raise ValueError(f"true, false or auto, not {value!r}") from None
        return value

    @field_validator("write_keys")
    @classmethod
    def _usable_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for key in value:
            # ':' ends the user name of HTTP Basic auth; ',' separates keys in the environment.
            if any(c in key.get_secret_value() for c in ",: \t\r\n"):
                raise ValueError("a write key may not contain ',', ':' or whitespace")
        return value

    def inbox_base_url(self) -> str:
        """Where reps open their inbox: `inbox_public_url`, else this machine's web port."""
        return (self.inbox_public_url or f"http://127.0.0.1:{self.web_port}").rstrip("/")

    @field_validator("inbox_secret", "inbox_public_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("inbox_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the inbox secret needs at least 16 characters")
        return value

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for secret, file_field in _SECRET_FILES.items():
            path = data.get(file_field)
            if path in (None, ""):
                continue
            if data.get(secret) not in (None, ""):
                raise ValueError(
                    f"set LEADSTREAM_{secret.upper()} or LEADSTREAM_{file_field.upper()}, not both"
                )
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ValueError(
                    f"LEADSTREAM_{file_field.upper()}: cannot read {path}: {reason}"
                ) from exc
            # `echo secret > file` leaves a newline that is no part of the secret.
            data = {**data, secret: text.rstrip("\r\n")}
        return data

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Settings:
        protocol = self.kafka_security_protocol
        sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
        given = f"LEADSTREAM_KAFKA_SECURITY_PROTOCOL is {protocol}"
        if sasl and not self.kafka_sasl_username:
            raise ValueError(f"{given}: set LEADSTREAM_KAFKA_SASL_USERNAME")
        if sasl and not (self.kafka_sasl_password and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(
                f"{given}: set LEADSTREAM_KAFKA_SASL_PASSWORD "
                "(or LEADSTREAM_KAFKA_SASL_PASSWORD_FILE)"
            )
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password):
            raise ValueError(
                f"{given}, so the SASL user and password would not be used: "
                "choose SASL_SSL or SASL_PLAINTEXT"
            )
        ssl_files = {
            "LEADSTREAM_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "LEADSTREAM_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "LEADSTREAM_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
            "LEADSTREAM_KAFKA_SSL_KEY_PASSWORD": self.kafka_ssl_key_password,
        }
        unused = [name for name, value in ssl_files.items() if value is not None]
        if not tls and unused:
            raise ValueError(f"{given}, so {unused[0]} would not be used: choose SSL or SASL_SSL")
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError(
                "LEADSTREAM_KAFKA_SSL_KEYFILE needs LEADSTREAM_KAFKA_SSL_CERTFILE (the "
                "client certificate it belongs to)"
            )
        return self

    def intake_in_own_process(self, cpus: float) -> bool:
        """Whether the intake runs in a child process, given the CPUs this process may use
        (`streams.cpus.available_cpus`)."""
        if self.intake_process == "auto":
            return cpus >= _INTAKE_PROCESS_MIN_CPUS
        return self.intake_process

    def to_env(self) -> dict[str, str]:
        """These settings as the environment of a child `leadstream` process."""
        prefix = self.model_config.get("env_prefix", "")
        # A setting left unset (None) is left out: the child takes the same default.
        # A secret read from a file stays in the file: the child reads the same file.
        from_files = {s for s, f in _SECRET_FILES.items() if getattr(self, f) is not None}
        return {
            f"{prefix}{name.upper()}": _env_value(value)
            for name, value in self
            if value is not None and name not in from_files
        }


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, tuple):
        return ",".join(_env_value(v) for v in value)
    return str(value)
