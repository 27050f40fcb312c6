"""Kafka security settings: what each client and Faust get, the errors a user sees, and that
no secret ever prints."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr, ValidationError

from streams.cli import _kafka, _settings
from streams.kafka_connection import KafkaConnection, as_connection, kafka_connection
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Pa55word"


@pytest.fixture(autouse=True)
def _no_leadstream_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _auth_kwargs(conn: KafkaConnection) -> dict[str, Any]:
    kwargs = conn.client_kwargs()
    assert kwargs.pop("bootstrap_servers") == conn.bootstrap
    return kwargs


def test_plaintext_by_default_with_every_broker_of_the_url() -> None:
    conn = kafka_connection(Settings(broker="kafka://k1:9092;k2:9092"))
    assert conn.client_kwargs() == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert conn.faust_credentials() is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_passes_mechanism_user_and_password(mechanism: str) -> None:
    conn = kafka_connection(
        Settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
            kafka_sasl_username="leadstream",
            kafka_sasl_password=SecretStr(PASSWORD),
        )
    )
    assert _auth_kwargs(conn) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "leadstream",
        "sasl_plain_password": PASSWORD,
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_adds_a_tls_context_that_trusts_the_given_ca(
    mechanism: str, cafile: Path, ca: trustme.CA
) -> None:
    conn = kafka_connection(
        Settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
            kafka_sasl_username="leadstream",
            kafka_sasl_password=SecretStr(PASSWORD),
            kafka_ssl_cafile=cafile,
        )
    )
    kwargs = _auth_kwargs(conn)
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "leadstream",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # ssl writes serials in hex with an even number of digits ("09B4..."): compare numbers.
    trusted = {int(c["serialNumber"], 16) for c in context.get_ca_certs()}
    assert ca._certificate.serial_number in trusted  # the CA file, not only the system's


def test_ssl_without_a_cafile_trusts_the_system_cas() -> None:
    conn = kafka_connection(Settings(kafka_security_protocol="SSL"))
    kwargs = _auth_kwargs(conn)
    assert kwargs["security_protocol"] == "SSL"
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in kwargs


def test_hostname_check_can_be_turned_off(cafile: Path) -> None:
    conn = kafka_connection(
        Settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=cafile,
            kafka_ssl_check_hostname=False,
        )
    )
    context = conn.client_kwargs()["ssl_context"]
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED  # the chain is still verified


def test_mutual_tls_loads_the_client_certificate_and_an_encrypted_key(
    ca: trustme.CA, cafile: Path, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    cert = ca.issue_cert("leadstream-client")
    certfile, keyfile = tmp_path / "client.pem", tmp_path / "client.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=cafile,
        kafka_ssl_certfile=certfile,
        kafka_ssl_keyfile=keyfile,
        kafka_ssl_key_password=SecretStr(PASSWORD),
    )
    assert kafka_connection(settings).client_kwargs()["ssl_context"] is not None

    wrong = settings.model_copy(update={"kafka_ssl_key_password": SecretStr("wrong")})
    with pytest.raises(ValueError, match=r"LEADSTREAM_KAFKA_SSL_\*\) cannot be used"):
        kafka_connection(wrong)


@pytest.mark.parametrize(
    ("protocol", "mechanism", "tls"),
    [
        ("PLAINTEXT", None, False),
        ("SSL", None, True),
        ("SASL_PLAINTEXT", "SCRAM-SHA-256", False),
        ("SASL_SSL", "SCRAM-SHA-512", True),
        ("SASL_SSL", "PLAIN", True),
    ],
)
def test_faust_gets_the_same_protocol_user_and_context(
    protocol: str, mechanism: str | None, tls: bool, cafile: Path
) -> None:
    sasl = protocol.startswith("SASL_")
    conn = kafka_connection(
        Settings(
            kafka_security_protocol=protocol,  # type: ignore[arg-type]
            kafka_sasl_mechanism=mechanism or "PLAIN",  # type: ignore[arg-type]
            kafka_sasl_username="leadstream" if sasl else None,
            kafka_sasl_password=SecretStr(PASSWORD) if sasl else None,
            kafka_ssl_cafile=cafile if tls else None,
        )
    )
    # What Faust's aiokafka driver hands its producer, consumers and admin client.
    faust_kwargs = dict(credentials_to_aiokafka_auth(conn.faust_credentials()))
    ours = _auth_kwargs(conn)
    if not sasl and not tls:
        assert faust_kwargs == ours == {"security_protocol": "PLAINTEXT"}
        return
    faust_kwargs = {k: v for k, v in faust_kwargs.items() if v is not None}
    assert faust_kwargs == ours
    assert ("ssl_context" in faust_kwargs) is tls
    assert faust_kwargs.get("ssl_context") is conn.ssl_context


def test_a_bare_bootstrap_string_is_plaintext() -> None:
    conn = as_connection("127.0.0.1:9092")
    assert conn.client_kwargs() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert as_connection(conn) is conn


# --- errors a user sees: one line naming the setting -----------------------------------------


def _error_lines(capsys: pytest.CaptureFixture[str], **env: str) -> list[str]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        with pytest.raises(SystemExit) as exit_:
            _kafka(_settings())
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert all(PASSWORD not in line for line in lines)
    return lines


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"LEADSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "leadstream: LEADSTREAM_KAFKA_SECURITY_PROTOCOL is SASL_SSL: "
            "set LEADSTREAM_KAFKA_SASL_USERNAME",
        ),
        (
            {
                "LEADSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "LEADSTREAM_KAFKA_SASL_USERNAME": "leadstream",
            },
            "leadstream: LEADSTREAM_KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT: "
            "set LEADSTREAM_KAFKA_SASL_PASSWORD (or LEADSTREAM_KAFKA_SASL_PASSWORD_FILE)",
        ),
        (
            {
                "LEADSTREAM_KAFKA_SASL_USERNAME": "leadstream",
                "LEADSTREAM_KAFKA_SASL_PASSWORD": PASSWORD,
            },
            "leadstream: LEADSTREAM_KAFKA_SECURITY_PROTOCOL is PLAINTEXT, so the SASL user and "
            "password would not be used: choose SASL_SSL or SASL_PLAINTEXT",
        ),
        (
            {
                "LEADSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "LEADSTREAM_KAFKA_SASL_MECHANISM": "GSSAPI",
            },
            "leadstream: setting LEADSTREAM_KAFKA_SASL_MECHANISM: Input should be 'PLAIN', "
            "'SCRAM-SHA-256' or 'SCRAM-SHA-512'",
        ),
        (
            {
                "LEADSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "LEADSTREAM_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem",
            },
            "leadstream: setting LEADSTREAM_KAFKA_SSL_CAFILE: Path does not point to a file",
        ),
    ],
)
def test_a_bad_combination_is_one_line_naming_the_setting(
    env: dict[str, str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert expected in _error_lines(capsys, **env)


def test_tls_files_with_plaintext_are_refused(
    cafile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _error_lines(capsys, LEADSTREAM_KAFKA_SSL_CAFILE=str(cafile)) == [
        "leadstream: LEADSTREAM_KAFKA_SECURITY_PROTOCOL is PLAINTEXT, so "
        "LEADSTREAM_KAFKA_SSL_CAFILE would not be used: choose SSL or SASL_SSL"
    ]


def test_a_key_without_its_certificate_is_refused(
    cafile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (line,) = _error_lines(
        capsys, LEADSTREAM_KAFKA_SECURITY_PROTOCOL="SSL", LEADSTREAM_KAFKA_SSL_KEYFILE=str(cafile)
    )
    assert line.startswith(
        "leadstream: LEADSTREAM_KAFKA_SSL_KEYFILE needs LEADSTREAM_KAFKA_SSL_CERTFILE"
    )


def test_a_cafile_that_is_no_certificate_names_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    (line,) = _error_lines(
        capsys, LEADSTREAM_KAFKA_SECURITY_PROTOCOL="SSL", LEADSTREAM_KAFKA_SSL_CAFILE=str(bad)
    )
    assert line.startswith(
        "leadstream: the Kafka TLS files (LEADSTREAM_KAFKA_SSL_*) cannot be used"
    )


# --- secrets from files -----------------------------------------------------------------------


def test_the_password_can_come_from_a_mounted_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")  # as `echo` or `kubectl create secret --from-file` leave it
    monkeypatch.setenv("LEADSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SASL_USERNAME", "leadstream")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SASL_PASSWORD_FILE", str(secret))

    settings = Settings()
    assert kafka_connection(settings).client_kwargs()["sasl_plain_password"] == PASSWORD

    # A child process is pointed at the same file; the password stays out of its environment.
    env = settings.to_env()
    assert env["LEADSTREAM_KAFKA_SASL_PASSWORD_FILE"] == str(secret)
    assert "LEADSTREAM_KAFKA_SASL_PASSWORD" not in env
    assert PASSWORD not in "".join(env.values())
    monkeypatch.delenv("LEADSTREAM_KAFKA_SASL_PASSWORD_FILE")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


def test_the_key_password_can_come_from_a_file_too(tmp_path: Path, cafile: Path) -> None:
    secret = tmp_path / "key-password"
    secret.write_text(PASSWORD)
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=cafile,
        kafka_ssl_key_password_file=secret,
    )
    assert settings.kafka_ssl_key_password == SecretStr(PASSWORD)


def test_a_password_and_a_password_file_at_once_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD)
    (line,) = _error_lines(
        capsys,
        LEADSTREAM_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        LEADSTREAM_KAFKA_SASL_USERNAME="leadstream",
        LEADSTREAM_KAFKA_SASL_PASSWORD=PASSWORD,
        LEADSTREAM_KAFKA_SASL_PASSWORD_FILE=str(secret),
    )
    assert line == (
        "leadstream: set LEADSTREAM_KAFKA_SASL_PASSWORD or "
        "LEADSTREAM_KAFKA_SASL_PASSWORD_FILE, not both"
    )


def test_an_unreadable_password_file_names_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    (line,) = _error_lines(
        capsys,
        LEADSTREAM_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        LEADSTREAM_KAFKA_SASL_USERNAME="leadstream",
        LEADSTREAM_KAFKA_SASL_PASSWORD_FILE=str(missing),
    )
    assert line.startswith(
        f"leadstream: LEADSTREAM_KAFKA_SASL_PASSWORD_FILE: cannot read {missing}"
    )


# --- secrets never print ----------------------------------------------------------------------


def test_no_secret_in_any_repr_str_or_message(cafile: Path) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="leadstream",
        kafka_sasl_password=SecretStr(PASSWORD),
        kafka_ssl_cafile=cafile,
        kafka_ssl_key_password=SecretStr(PASSWORD),
    )
    conn = kafka_connection(settings)
    shown = [
        repr(settings),
        str(settings),
        repr(conn),
        str(conn),
        conn.describe(),
        repr(conn.faust_credentials()),
        str(settings.model_dump()),
    ]
    for text in shown:
        assert PASSWORD not in text
    assert conn.describe() == "127.0.0.1:9092 (SASL_SSL, SCRAM-SHA-512 as 'leadstream')"


def test_a_validation_error_does_not_echo_the_password() -> None:
    with pytest.raises(ValidationError) as exc:
        Settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_password=SecretStr(PASSWORD),
        )
    assert PASSWORD not in str(exc.value)


def test_every_kafka_setting_is_in_the_readme_settings_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(LEADSTREAM_[A-Z0-9_]+)`", table))
    for name in Settings.model_fields:
        if name.startswith("kafka_"):
            assert f"LEADSTREAM_{name.upper()}" in documented, name
