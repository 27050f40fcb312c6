"""How every Kafka client connects: bootstrap servers, SASL and TLS, from the settings.

One value, `KafkaConnection`, is built at the entry point (`kafka_connection(settings)`) and
passed down to every aiokafka client (`client_kwargs()`) and to the Faust app
(`faust_credentials()`), so no client can connect with less security than configured.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from streams.settings import SaslMechanism, SecurityProtocol

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from streams.settings import Settings

__all__ = [
    "KafkaConnection",
    "as_connection",
    "bootstrap_servers",
    "kafka_connection",
    "ssl_context",
]


def bootstrap_servers(url: str) -> str:
    """'kafka://a:9092;b:9092' or 'a:9092,b:9092' -> 'a:9092,b:9092' for aiokafka."""
    hosts = []
    for part in url.replace(";", ",").split(","):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        if part:
            hosts.append(part)
    return ",".join(hosts)


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Where the brokers are and how to authenticate to them; the password never prints."""

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # Built from files at the entry point; None with TLS means the system's CAs.
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.uses_tls and self.ssl_context is None:
            # aiokafka refuses TLS without a context; the default one trusts the system's CAs.
            object.__setattr__(self, "ssl_context", ssl.create_default_context())
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(f"{self.security_protocol} needs a mechanism, user and password")
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise ValueError(f"{self.security_protocol} takes no SASL mechanism or user")
        if self.ssl_context is not None and not self.uses_tls:
            raise ValueError(f"{self.security_protocol} takes no SSL context")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of any aiokafka client (producer, consumer, admin)."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        if self.sasl_password is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return kwargs

    def faust_credentials(self) -> CredentialsT | None:
        """The Faust app's `broker_credentials`: the same protocol, user and TLS context."""
        from faust import SASLCredentials, SSLCredentials

        context = self.ssl_context
        if self.sasl_password is not None:
            # Faust picks SASL_SSL when given a context, SASL_PLAINTEXT without one.
            return SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value(),
                mechanism=self.sasl_mechanism,
                ssl_context=context,
            )
        if context is not None:
            return SSLCredentials(context)
        return None

    def failure(self, exc: BaseException) -> str:
        """A failed connection's error, with what to check for this protocol: aiokafka says
        only "Unable to bootstrap" whether the broker is down or refused the login."""
        checks = []
        if self.uses_tls:
            checks.append("the TLS handshake failed (LEADSTREAM_KAFKA_SSL_*)")
        if self.sasl_mechanism:
            checks.append(
                f"authentication failed (LEADSTREAM_KAFKA_SASL_USERNAME and _PASSWORD, "
                f"{self.sasl_mechanism} enabled for the user on the broker)"
            )
        if not checks:
            return repr(exc)
        return f"{exc!r}; as {self.describe()}: unreachable, or " + ", or ".join(checks)

    def describe(self) -> str:
        """For messages: where and how, never the password."""
        how: str = self.security_protocol
        if self.sasl_mechanism:
            how += f", {self.sasl_mechanism} as {self.sasl_username!r}"
        return f"{self.bootstrap} ({how})"


def as_connection(kafka: KafkaConnection | str) -> KafkaConnection:
    """A bare 'host:port' string is a PLAINTEXT connection (tests, the embedded broker)."""
    return kafka if isinstance(kafka, KafkaConnection) else KafkaConnection(bootstrap=kafka)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context the settings describe (files read now), or None without TLS."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    key_password = settings.kafka_ssl_key_password
    context = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        password=key_password.get_secret_value() if key_password else None,
    )
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def kafka_connection(settings: Settings) -> KafkaConnection:
    """The connection every client uses; raises ValueError naming the setting at fault."""
    sasl = settings.kafka_security_protocol.startswith("SASL_")
    try:
        context = ssl_context(settings)
    except ssl.SSLError as exc:
        raise ValueError(
            f"the Kafka TLS files (LEADSTREAM_KAFKA_SSL_*) cannot be used: {exc.reason or exc}"
        ) from exc
    return KafkaConnection(
        bootstrap=bootstrap_servers(settings.broker),
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism if sasl else None,
        sasl_username=settings.kafka_sasl_username if sasl else None,
        sasl_password=settings.kafka_sasl_password if sasl else None,
        ssl_context=context,
    )
