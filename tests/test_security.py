"""Security: where deliveries may go, HTTPS verification, signature schemes and rotation, secrets kept
secret (also at rest), and authenticated Kafka connections."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, text

from assethooks.secrets import new_key
from assethooks.signing import verify_delivery
from schemas.tasks import DEAD_LETTER_HEADER, DeadLetter, header_value
from tests.conftest import TestEnv
from tests.support import (
    ASSETHOOKS,
    ROOT,
    Receiver,
    Redirect,
    cli,
    free_port,
    read_topic,
    service,
    wait_until,
)

FULLWIDTH_LOOPBACK = "".join(chr(ord(char) + 0xFEE0) if char.isdigit() else char for char in "127.0.0.1")


def create(env: TestEnv, *args: str, name: str = "hook") -> Any:
    result = cli("webhooks", "create", "--name", name, "--all-events", "--json", *args, env=env.values)
    assert result.code == 0, result.err
    return json.loads(result.out)


def publish(env: TestEnv, event: str = "asset.created", asset_id: int = 1) -> None:
    done = cli("publish", "--event", event, "--asset-id", str(asset_id), env=env.values)
    assert done.code == 0, done.err


# -- where deliveries may go ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::1]",
        "localhost",
        "[::ffff:127.0.0.1]",
        FULLWIDTH_LOOPBACK,
        "169.254.169.254",
        "10.1.2.3",
        "192.168.0.10",
        "100.64.0.1",
        "[fd00::1]",
        "0.0.0.0",
    ],
)
def test_a_webhook_to_a_non_public_address_is_refused_when_saved(
    env: TestEnv, engine: Engine, host: str
) -> None:
    closed = env.with_(allowed_cidrs="")
    result = cli(
        "webhooks",
        "create",
        "--name",
        "x",
        "--url",
        f"http://{host}:8080/hook",
        "--all-events",
        env=closed.values,
    )
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert line.startswith("Error: refused to connect to ")
    assert "not a public address" in line
    assert cli("webhooks", "list", "--json", env=closed.values).out.strip() == "[]"


def test_loopback_is_accepted_when_allowed_and_updates_are_checked_too(env: TestEnv, engine: Engine) -> None:
    hook = create(env, "--url", "http://localhost:8080/hook")
    refused = cli("webhooks", "update", str(hook["id"]), "--url", "http://169.254.169.254/x", env=env.values)
    assert refused.code == 2
    assert "not a public address" in refused.err
    assert cli("webhooks", "show", str(hook["id"]), "--json", env=env.values).out.count("localhost") == 1


def test_blocked_addresses_are_refused_at_send_time_and_reached_once_allowed(
    env: TestEnv, engine: Engine, tmp_path: Path
) -> None:
    v4 = Receiver().start()
    v6 = Receiver(host="::1").start()
    try:
        # Saved while loopback was allowed; then the allow-list is switched off.
        urls = {
            "literal IPv4": v4.url("/v4"),
            "literal IPv6": v6.url("/v6"),
            "name": f"http://localhost:{v4.port}/name",
            "IPv4-mapped IPv6": f"http://[::ffff:127.0.0.1]:{v4.port}/mapped",
            "fullwidth digits": f"http://{FULLWIDTH_LOOPBACK}:{v4.port}/fullwidth",
        }
        for name, url in urls.items():
            create(env, "--url", url, name=name)
        closed = env.with_(allowed_cidrs="")
        publish(closed)
        with service("all", closed.values, tmp_path / "closed.log"):
            dead = read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=len(urls))
        assert v4.requests() == []
        assert v6.requests() == []
        reasons = [
            DeadLetter.model_validate_json(header_value(record.headers(), DEAD_LETTER_HEADER) or b"").reason
            for record in dead
        ]
        assert all("not a public address" in reason for reason in reasons), reasons

        replayed = cli("dlq", "replay", "--all", env=env.values)
        assert replayed.code == 0, replayed.err
        with service("all", env.values, tmp_path / "open.log"):
            v4.wait_for(4)
            v6.wait_for(1)
        assert sorted(request.path for request in v4.requests()) == ["/fullwidth", "/mapped", "/name", "/v4"]
        assert [request.path for request in v6.requests()] == ["/v6"]
    finally:
        v4.stop()
        v6.stop()


def test_a_redirect_is_not_followed_and_is_logged_with_its_location(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.plan("/moved", then=Redirect("http://169.254.169.254/latest/meta-data/"))
    hook = create(env, "--url", receiver.url("/moved"))
    result = cli("webhooks", "test", str(hook["id"]), env=env.values)
    assert result.code == 5
    assert "HTTP 302: redirect to http://169.254.169.254/latest/meta-data/ not followed" in result.err
    assert len(receiver.requests()) == 1


# -- HTTPS ---------------------------------------------------------------------------------------------


def _certificates(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A private CA, and a server context with a certificate it signed for 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "assethooks test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return ca_file, server


def test_https_certificates_are_verified_and_a_private_ca_can_be_trusted(
    env: TestEnv, engine: Engine, tmp_path: Path
) -> None:
    ca_file, server = _certificates(tmp_path)
    secure = Receiver(tls=server).start()
    try:
        hook = create(env, "--url", secure.url("/tls"))
        untrusted = cli("webhooks", "test", str(hook["id"]), env=env.values)
        assert untrusted.code == 5
        assert "certificate verify failed" in untrusted.err
        trusted = cli("webhooks", "test", str(hook["id"]), env=env.with_(ca_bundle=str(ca_file)).values)
        assert trusted.code == 0, trusted.err
        assert trusted.out.startswith(f"HTTP 200 from {secure.url('/tls')}")
        assert len(secure.requests()) == 1
    finally:
        secure.stop()
    missing = cli("config", env=env.with_(ca_bundle=str(tmp_path / "nope.pem")).values)
    assert missing.code == 2
    assert missing.err.strip() == f"Error: ASSETHOOKS_CA_BUNDLE: no such file: {tmp_path / 'nope.pem'}"


# -- signatures ----------------------------------------------------------------------------------------

STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_NEXT = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


def test_standard_webhooks_deliveries_verify_with_the_reference_library(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    create(env, "--url", receiver.url("/std"), "--signature", "standard", "--secret", STANDARD_SECRET)
    wrong = cli("webhooks", "create", "--name", "x", "--url", receiver.url("/x"), "--all-events",
                "--signature", "standard", "--secret", "plain-secret", env=env.values)  # fmt: skip
    assert wrong.code == 2
    assert "a standard signature secret starts with whsec_" in wrong.err
    publish(env)
    with service("dispatcher", env.values, tmp_path / "run.log"):
        (request,) = receiver.wait_for(1, "/std")
    payload = standardwebhooks.Webhook(STANDARD_SECRET).verify(request.body, request.headers)
    assert payload["event"] == "asset.created"
    assert request.header("webhook-id") == request.header("X-Asset-Webhook-Delivery")
    assert request.header("X-Asset-Webhook-Signature") is None
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(STANDARD_NEXT).verify(request.body, request.headers)


def test_during_a_rotation_deliveries_verify_with_both_secrets_then_only_the_new_one(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    seed = create(env, "--url", receiver.url("/seed"), "--secret", "old-seed-secret", name="seed")
    standard = create(
        env, "--url", receiver.url("/std"), "--signature", "standard", "--secret", STANDARD_SECRET
    )
    with service("dispatcher", env.values, tmp_path / "run.log") as running:
        running.wait_assigned()
        rotated = cli("webhooks", "rotate-secret", str(seed["id"]), "--secret", "-", "--grace", "12s",
                      env=env.values, stdin="new-seed-secret\n")  # fmt: skip
        assert rotated.code == 0, rotated.err
        assert "signs with both secrets for 12s" in rotated.out
        cli(
            "webhooks",
            "rotate-secret",
            str(standard["id"]),
            "--secret",
            STANDARD_NEXT,
            "--grace",
            "12s",
            env=env.values,
        )
        listed = json.loads(cli("webhooks", "list", "--json", env=env.values).out)
        untils = [dt.datetime.fromisoformat(hook["previous_secret_until"]) for hook in listed]
        since, until = min(untils), max(untils)
        publish(env, asset_id=1)
        during_seed = receiver.wait_for(1, "/seed")[0]
        during_std = receiver.wait_for(1, "/std")[0]
        assert dt.datetime.now(dt.UTC) < since, "the deliveries came too late to test the grace period"
        wait_until(lambda: dt.datetime.now(dt.UTC) > until, timeout=20, what="the end of the grace period")
        publish(env, asset_id=2)
        after_seed = receiver.wait_for(2, "/seed")[1]
        after_std = receiver.wait_for(2, "/std")[1]

    def seed_ok(request: Any, secret: str) -> bool:
        return (
            verify_delivery(secret, request.body, request.headers, now=dt.datetime.now(dt.UTC).timestamp())
            is None
        )

    def standard_ok(request: Any, secret: str) -> bool:
        try:
            standardwebhooks.Webhook(secret).verify(request.body, request.headers)
        except standardwebhooks.WebhookVerificationError:
            return False
        return True

    assert seed_ok(during_seed, "old-seed-secret")
    assert seed_ok(during_seed, "new-seed-secret")
    assert standard_ok(during_std, STANDARD_SECRET)
    assert standard_ok(during_std, STANDARD_NEXT)
    assert not seed_ok(after_seed, "old-seed-secret")
    assert seed_ok(after_seed, "new-seed-secret")
    assert after_seed.header("X-Asset-Webhook-Signature-Next") is None
    assert not standard_ok(after_std, STANDARD_SECRET)
    assert standard_ok(after_std, STANDARD_NEXT)


# -- secrets kept secret -------------------------------------------------------------------------------

WEBHOOK_SECRET = "sEcReT-webhook-8f3a1c"
PRIVATE_KEY = "whsk_cHJpdmF0ZS1lZDI1NTE5LWtleS1mb3ItdGhlLXN3ZWU="  # an Ed25519 seed
HEADER_SECRET = "hEaDeR-api-key-77d0b2"
KAFKA_PASSWORD = "kAfKa-password-4e19"


def test_no_output_of_a_full_run_contains_a_secret(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    sealed = env.with_(encryption_keys=new_key(), retry_schedule="1s", kafka_sasl_password=KAFKA_PASSWORD)
    said: list[str] = []

    def run(*args: str, stdin: str | None = None) -> str:
        result = cli(*args, env=sealed.values, stdin=stdin)
        said.extend([result.out, result.err])
        return result.out

    create_ok = ["webhooks", "create", "--name", "ok", "--url", receiver.url("/ok"), "--all-events", "--json"]
    ok = json.loads(
        run(*create_ok, "--secret", "-", "--header", f"X-Api-Key: {HEADER_SECRET}", stdin=WEBHOOK_SECRET)
    )
    create_down = [
        "webhooks",
        "create",
        "--name",
        "down",
        "--url",
        receiver.url("/down"),
        "--all-events",
        "--json",
    ]
    down = json.loads(
        run(*create_down, "--secret", WEBHOOK_SECRET, "--header", f"Authorization: Bearer {HEADER_SECRET}")
    )
    create_ed = ["webhooks", "create", "--name", "ed", "--url", receiver.url("/ed"), "--all-events", "--json"]
    ed = json.loads(run(*create_ed, "--signature", "standard-ed25519", "--secret", "-", stdin=PRIVATE_KEY))
    receiver.plan("/down", then=500)
    run("publish", "--event", "asset.lost", "--asset-id", "3")
    with service("all", sealed.values, tmp_path / "run.log", "--log-level", "DEBUG") as running:
        dead = read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=1)
        receiver.wait_for(1, "/ok")
        receiver.wait_for(1, "/ed")
        run("webhooks", "test", str(ok["id"]))
        run("webhooks", "rotate-secret", str(ed["id"]), "--generate-key")
    said.append(running.output())
    for args in (
        ("webhooks", "list"), ("webhooks", "list", "--json"), ("webhooks", "show", str(down["id"])),
        ("webhooks", "show", str(ok["id"]), "--json"), ("config",), ("config", "--json"), ("logs",),
        ("logs", "--json"), ("dlq", "list", "--json"), ("dlq", "show", "1"), ("dlq", "show", "1", "--json"),
        ("webhooks", "show", str(ed["id"])),
    ):  # fmt: skip
        run(*args)
    said.extend(str(record.headers()) + str(record.value()) for record in dead)
    with engine.connect() as connection:
        for table in ("webhooks", "delivery_logs", "dead_letters"):
            said.extend(str(row) for row in connection.execute(text(f"SELECT * FROM {table}")))
    everything = "\n".join(said)
    assert "****" in everything  # masked values were shown
    assert "enc:v1:" in everything  # the stored secrets are encrypted
    for secret in (WEBHOOK_SECRET, HEADER_SECRET, KAFKA_PASSWORD, PRIVATE_KEY.removeprefix("whsk_")):
        assert secret not in everything
    assert "whsk_" not in everything  # neither the given private key nor the generated one
    assert ed["public_key"].startswith("whpk_")
    assert ed["public_key"] in everything  # the public key is shown: receivers need it
    assert receiver.requests("/ok")[0].header("X-Api-Key") == HEADER_SECRET  # yet they were used


def test_secrets_at_rest_need_the_key_and_can_be_encrypted_later(env: TestEnv, engine: Engine) -> None:
    hook = create(env, "--url", "https://erp.example.com/hook", "--secret", WEBHOOK_SECRET)
    with engine.connect() as connection:
        (stored,) = connection.execute(text("SELECT secret FROM webhooks")).one()
    assert stored == WEBHOOK_SECRET  # no key configured: stored as given

    first, second = new_key(), new_key()
    keyed = env.with_(encryption_keys=first)
    assert (
        cli("secrets", "encrypt", env=keyed.values).out.strip()
        == "re-encrypted the secrets of 1 webhook with the first key"
    )
    with engine.connect() as connection:
        (stored,) = connection.execute(text("SELECT secret FROM webhooks")).one()
    assert stored.startswith("enc:v1:")

    unkeyed = cli("webhooks", "show", str(hook["id"]), env=env.values)
    assert unkeyed.code == 2
    assert (
        unkeyed.err.strip()
        == "Error: webhook secrets are encrypted in the store: set ASSETHOOKS_ENCRYPTION_KEYS"
    )
    rotated = env.with_(encryption_keys=f"{second},{first}")
    assert cli("secrets", "encrypt", env=rotated.values).code == 0
    assert cli("webhooks", "show", str(hook["id"]), env=env.with_(encryption_keys=second).values).code == 0
    wrong = cli("webhooks", "show", str(hook["id"]), env=env.with_(encryption_keys=first).values)
    assert wrong.err.strip() == "Error: a stored secret does not decrypt with ASSETHOOKS_ENCRYPTION_KEYS"
    bad = cli("webhooks", "list", env=env.with_(encryption_keys="not-a-key").values)
    assert bad.code == 2
    assert (
        bad.err.strip()
        == "Error: ASSETHOOKS_ENCRYPTION_KEYS: not a Fernet key (make one with `assethooks secrets new-key`)"
    )


# -- Kafka authentication ------------------------------------------------------------------------------


def test_kafka_with_sasl_works_with_the_right_credentials_and_says_why_not_otherwise(env: TestEnv) -> None:
    port, sasl_port = free_port(), free_port()
    script = [str(ROOT / "scripts" / "kafka-local.sh")]
    broker_env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_SASL_PORT": str(sasl_port),
        "KAFKA_SASL_USERS": f"assethooks:{KAFKA_PASSWORD}",
    }
    started = subprocess.run(
        [*script, "start"], env=broker_env, capture_output=True, text=True, timeout=180, check=False
    )
    assert started.returncode == 0, started.stderr
    try:
        sasl = env.with_(
            kafka_bootstrap=f"127.0.0.1:{sasl_port}",
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="assethooks",
            kafka_sasl_password=KAFKA_PASSWORD,
        )
        good = cli("topics", "ensure", env=sasl.values)
        assert good.code == 0, good.err
        assert "created" in good.out
        wrong = cli("topics", "ensure", env=sasl.with_(kafka_sasl_password="guess").values)
        assert wrong.code == 4
        assert wrong.err.strip() == (
            f"Error: cannot reach Kafka at 127.0.0.1:{sasl_port} "
            "(SASL authentication error: Authentication failed: Invalid username or password)"
        )
        shown = cli("config", "--json", env=sasl.values)
        assert json.loads(shown.out)["kafka_sasl_password"] == "****"
        assert KAFKA_PASSWORD not in shown.out
        missing_env = {
            key: value for key, value in sasl.values.items() if key != "ASSETHOOKS_KAFKA_SASL_PASSWORD"
        }
        missing = subprocess.run(
            [str(ASSETHOOKS), "topics", "ensure"],
            env={key: value for key, value in os.environ.items() if not key.startswith("ASSETHOOKS_")}
            | missing_env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert missing.returncode == 2
        assert missing.stderr.strip() == "Error: SASL_PLAINTEXT needs ASSETHOOKS_KAFKA_SASL_PASSWORD"
    finally:
        subprocess.run([*script, "stop"], env=broker_env, capture_output=True, timeout=60, check=False)
        shutil.rmtree(ROOT / ".local" / "kafka" / f"node-{port}", ignore_errors=True)
