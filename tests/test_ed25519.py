"""Ed25519 signatures (Standard Webhooks ``v1a``): keys, the CLI on SQLite and PostgreSQL, and real deliveries
verified with ``cryptography`` by the spec's own recipe (no released Standard Webhooks library verifies
``v1a`` yet: see the README's "Ed25519 signatures"), during and after a key rotation."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from multidict import CIMultiDict
from sqlalchemy import Engine, text

from assethooks.cli import main
from assethooks.errors import InvalidWebhookError
from assethooks.secrets import new_key
from assethooks.signing import (
    _private_key,
    ed25519_public_key,
    ed25519_signature,
    verify_standard_delivery,
)
from assethooks.store.db import make_engine
from schemas.webhooks import validate_webhook
from tests.conftest import TestEnv
from tests.support import ASSETHOOKS, ROOT, Received, Receiver, cli, free_port, service, wait_until

# The known answer of the reference Go library's asymmetric tests (standard-webhooks PR #253, not yet
# released): this key, message id, timestamp and payload sign to exactly this v1a signature.
REFERENCE_KEY = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
REFERENCE_SIGNATURE = (
    "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
)
README = ROOT / "README.md"
PUBLIC_KEY_LINE = re.compile(
    r"^Public key \(give it to the receiver; `webhooks show` shows it again\): (whpk_\S+)$", re.M
)


def spec_verifies(public_key: str, request: Received, *, now: float, tolerance: float = 300) -> bool:
    """The spec's check, written from its text with ``cryptography`` alone: some ``v1a`` entry of the
    space-separated ``webhook-signature`` is the Ed25519 signature of
    ``{webhook-id}.{webhook-timestamp}.{body}`` under the ``whpk_`` key (base64 of the raw 32-byte public
    key), and the timestamp is recent."""
    verifier = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    message_id, timestamp = request.header("webhook-id"), request.header("webhook-timestamp")
    assert message_id, request.headers
    assert timestamp, request.headers
    signed = f"{message_id}.{timestamp}.".encode() + request.body
    for entry in (request.header("webhook-signature") or "").split(" "):
        version, _, signature = entry.partition(",")
        if version != "v1a":
            continue
        try:
            verifier.verify(base64.b64decode(signature), signed)
        except InvalidSignature:
            continue
        return abs(now - int(timestamp)) <= tolerance
    return False


def readme_receiver_example(public_keys: list[str]) -> Callable[[bytes, CIMultiDict[str], float], bool]:
    """The README's receiver-side example (its "Ed25519 signatures" section), run as written."""
    section = README.read_text().split("### Ed25519 signatures", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    namespace["PUBLIC_KEYS"] = public_keys
    verify: Callable[[bytes, CIMultiDict[str], float], bool] = namespace["verify"]
    return verify


def raw_public_key(private_key: str) -> str:
    seed = base64.b64decode(private_key.removeprefix("whsk_"))
    public = (
        Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return "whpk_" + base64.b64encode(public).decode()


def new_private_key() -> str:
    return "whsk_" + base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()


# -- keys and signatures (pure) ------------------------------------------------------------------------


def test_signatures_match_the_reference_known_answer_and_keys_follow_the_spec_encoding() -> None:
    body = b'{"test": 2432232314}'
    assert (
        ed25519_signature(REFERENCE_KEY, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == REFERENCE_SIGNATURE
    )
    assert ed25519_public_key(REFERENCE_KEY) == raw_public_key(REFERENCE_KEY)
    # The 64-byte form (seed, then public key) that libsodium and Go write names the same key.
    seed = base64.b64decode(REFERENCE_KEY.removeprefix("whsk_"))
    public = base64.b64decode(raw_public_key(REFERENCE_KEY).removeprefix("whpk_"))
    long_form = "whsk_" + base64.b64encode(seed + public).decode()
    assert ed25519_public_key(long_form) == ed25519_public_key(REFERENCE_KEY)
    spec = validate_webhook(
        name="k", url="https://erp.example.com/h", signature="standard-ed25519", secret=long_form
    )
    assert spec.public_key == raw_public_key(REFERENCE_KEY)
    # a seed secret may be any text: one that happens to start with whsk_ stays an HMAC secret
    assert spec.with_changes(signature="seed").public_key is None


@pytest.mark.parametrize(
    ("secret", "scheme", "problem"),
    [
        (
            None,
            "standard-ed25519",
            "the standard-ed25519 signature needs a private key (whsk_…, or --generate-key)",
        ),
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "standard-ed25519",
            "an Ed25519 private key starts with whsk_",
        ),
        ("whsk_not base64!", "standard-ed25519", "a whsk_ key must be base64 after its prefix"),
        (
            "whsk_" + base64.b64encode(b"x" * 31).decode(),
            "standard-ed25519",
            "a whsk_ key must hold the 32-byte",
        ),
        (
            "whsk_" + base64.b64encode(b"x" * 64).decode(),
            "standard-ed25519",
            "a whsk_ key must hold the 32-byte",
        ),
        (raw_public_key(REFERENCE_KEY), "standard-ed25519", "a whpk_ key is the public key"),
        (REFERENCE_KEY, "standard", "a standard signature secret starts with whsec_"),
    ],
)
def test_a_key_that_does_not_fit_is_refused_in_one_line_without_quoting_it(
    secret: str | None, scheme: str, problem: str
) -> None:
    with pytest.raises(InvalidWebhookError) as refused:
        validate_webhook(name="k", url="https://erp.example.com/h", signature=scheme, secret=secret)
    message = str(refused.value)
    assert problem in message
    assert "\n" not in message
    assert secret is None or secret.partition("_")[2] not in message


def test_verify_standard_delivery_checks_v1a_against_the_clock_it_is_given() -> None:
    old, new = new_private_key(), new_private_key()
    body = b'{"event":"asset.created"}'
    listed = " ".join(ed25519_signature(key, "d-1", 1_700_000_000, body) for key in (new, old))
    headers = {"Webhook-Id": "d-1", "Webhook-Timestamp": "1700000000", "Webhook-Signature": listed}
    for key in (old, new):
        assert verify_standard_delivery(raw_public_key(key), body, headers, now=1_700_000_100) is None
    other = raw_public_key(new_private_key())
    assert (
        verify_standard_delivery(other, body, headers, now=1_700_000_000)
        == "no v1a signature matches the body"
    )
    assert verify_standard_delivery(raw_public_key(new), body + b" ", headers, now=1_700_000_000) == (
        "no v1a signature matches the body"
    )
    assert verify_standard_delivery(raw_public_key(new), body, headers, now=1_700_000_301) == (
        "timestamp 1700000000 is more than 300s away from now"
    )
    moved = {**headers, "Webhook-Id": "d-2"}
    assert verify_standard_delivery(raw_public_key(new), body, moved, now=1_700_000_000) is not None
    assert verify_standard_delivery("whpk_short", body, headers, now=1_700_000_000) == (
        "the key must be a whpk_ public key (base64 of 32 bytes) or a whsec_ secret"
    )


def test_signing_loads_each_key_once() -> None:
    key, body = new_private_key(), b"x" * 600
    before = _private_key.cache_info()
    signatures = {ed25519_signature(key, f"delivery-{number}", 1_700_000_000, body) for number in range(50)}
    after = _private_key.cache_info()
    assert len(signatures) == 50
    assert after.misses - before.misses == 1
    assert after.hits - before.hits == 49


# -- the CLI on SQLite and PostgreSQL ------------------------------------------------------------------


def run(store_env: TestEnv, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=store_env.values, input=stdin, catch_exceptions=False)


def test_generated_and_given_keys_show_only_their_public_key_and_rotate_with_grace(
    store_env: TestEnv,
) -> None:
    sealed = store_env.with_(encryption_keys=new_key())
    create = ["webhooks", "create", "--name", "ed", "--url", "https://erp.example.com/h", "--all-events"]
    made = run(sealed, *create, "--signature", "standard-ed25519", "--generate-key")
    assert made.exit_code == 0, made.output
    assert "whsk_" not in made.output
    (first_public,) = PUBLIC_KEY_LINE.findall(made.stdout)
    shown = json.loads(run(sealed, "webhooks", "show", "1", "--json").stdout)
    assert (shown["signature"], shown["secret"], shown["public_key"]) == (
        "standard-ed25519",
        "****",
        first_public,
    )
    assert shown["previous_public_key"] is None
    text_show = run(sealed, "webhooks", "show", "1").stdout
    assert re.search(rf"^public_key +{re.escape(first_public)}$", text_show, re.M)
    engine = make_engine(sealed["database_url"])
    try:
        with engine.connect() as connection:
            (stored,) = connection.execute(text("SELECT secret FROM webhooks WHERE id = 1")).one()
        assert stored.startswith("enc:v1:")  # the private key is encrypted at rest like any secret

        given = new_private_key()
        second = run(
            sealed, *create, "--signature", "standard-ed25519", "--secret", "-", "--json", stdin=given + "\n"
        )
        assert second.exit_code == 0, second.output
        assert json.loads(second.stdout)["public_key"] == raw_public_key(given)
        assert given not in second.output

        rotated = run(sealed, "webhooks", "rotate-secret", "1", "--generate-key", "--grace", "24h")
        assert rotated.exit_code == 0, rotated.output
        assert "signs with both keys for 1d, until " in rotated.stdout
        assert "whsk_" not in rotated.output
        (new_public,) = PUBLIC_KEY_LINE.findall(rotated.stdout)
        listed = {hook["id"]: hook for hook in json.loads(run(sealed, "webhooks", "list", "--json").stdout)}
        assert (listed[1]["public_key"], listed[1]["previous_public_key"]) == (new_public, first_public)
        assert listed[2]["previous_public_key"] is None
        with engine.connect() as connection:
            (previous,) = connection.execute(text("SELECT previous_secret FROM webhooks WHERE id = 1")).one()
        assert previous.startswith("enc:v1:")
    finally:
        engine.dispose()

    pair_only = (
        "Error: the standard-ed25519 signature uses a key pair: ask for --generate-key "
        "(its public key is shown, the private key never)"
    )
    refusals = [
        (
            (*create, "--generate-key"),
            "Error: --generate-key makes an Ed25519 key pair: it is for the standard-ed25519 signature",
        ),
        ((*create, "--signature", "standard-ed25519", "--generate-secret"), pair_only),
        (
            (*create, "--signature", "standard-ed25519", "--secret", "whsk_YWJj"),
            "Error: a whsk_ key must hold the 32-byte Ed25519 seed (or seed and public key, 64 bytes)",
        ),
        (("webhooks", "rotate-secret", "1", "--generate-secret"), pair_only),
    ]
    for args, error in refusals:
        refused = run(sealed, *args)
        assert (refused.exit_code, refused.stderr.strip()) == (2, error), args
    assert len(json.loads(run(sealed, "webhooks", "list", "--json").stdout)) == 2

    # an HMAC webhook, in the grace of a rotation, switched to Ed25519: its pair is made for the scheme it
    # will have, and the switch is at once (the old secret, not a key, no longer signs or shows)
    assert run(sealed, *create, "--secret", "whsk_live_an-hmac-secret").exit_code == 0
    assert run(sealed, "webhooks", "rotate-secret", "3", "--secret", "another-one").exit_code == 0
    switched = run(sealed, "webhooks", "update", "3", "--signature", "standard-ed25519", "--generate-key")
    assert switched.exit_code == 0, switched.output
    (public_key,) = PUBLIC_KEY_LINE.findall(switched.stdout)
    shown = json.loads(run(sealed, "webhooks", "show", "3", "--json").stdout)
    assert (shown["signature"], shown["public_key"]) == ("standard-ed25519", public_key)
    assert (shown["previous_public_key"], shown["previous_secret_until"]) == (None, None)
    back = run(sealed, "webhooks", "update", "3", "--signature", "seed", "--generate-key")
    assert (back.exit_code, back.stderr.strip()) == (
        2,
        "Error: --generate-key makes an Ed25519 key pair: it is for the standard-ed25519 signature",
    )


# -- real deliveries -----------------------------------------------------------------------------------


def test_deliveries_verify_with_both_public_keys_during_a_rotation_then_only_the_new_one(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    made = cli("webhooks", "create", "--name", "ed", "--url", receiver.url("/ed"), "--all-events",
               "--signature", "standard-ed25519", "--generate-key", env=env.values)  # fmt: skip
    assert made.code == 0, made.err
    (old_public,) = PUBLIC_KEY_LINE.findall(made.out)

    def publish(asset_id: int) -> None:
        done = cli("publish", "--event", "asset.created", "--asset-id", str(asset_id), env=env.values)
        assert done.code == 0, done.err

    with service("dispatcher", env.values, tmp_path / "run.log") as running:
        running.wait_assigned()
        publish(1)
        (before,) = receiver.wait_for(1, "/ed")
        rotated = cli("webhooks", "rotate-secret", "1", "--generate-key", "--grace", "12s", env=env.values)
        assert rotated.code == 0, rotated.err
        (new_public,) = PUBLIC_KEY_LINE.findall(rotated.out)
        until = dt.datetime.fromisoformat(
            json.loads(cli("webhooks", "show", "1", "--json", env=env.values).out)["previous_secret_until"]
        )
        publish(2)
        during = receiver.wait_for(2, "/ed")[1]
        assert dt.datetime.now(dt.UTC) < until, "the delivery came too late to test the grace period"
        wait_until(lambda: dt.datetime.now(dt.UTC) > until, timeout=20, what="the end of the grace period")
        publish(3)
        after = receiver.wait_for(3, "/ed")[2]

    now = dt.datetime.now(dt.UTC).timestamp()
    assert len((before.header("webhook-signature") or "").split(" ")) == 1
    assert spec_verifies(old_public, before, now=now)
    assert not spec_verifies(new_public, before, now=now)
    assert [entry.partition(",")[0] for entry in (during.header("webhook-signature") or "").split(" ")] == [
        "v1a",
        "v1a",
    ]
    assert spec_verifies(old_public, during, now=now)
    assert spec_verifies(new_public, during, now=now)
    assert spec_verifies(new_public, after, now=now)
    assert not spec_verifies(old_public, after, now=now)
    assert during.header("webhook-id") == during.header("X-Asset-Webhook-Delivery")
    assert during.header("X-Asset-Webhook-Signature") is None
    payload: dict[str, Any] = json.loads(during.body)
    assert payload["event"] == "asset.created"
    # the README's receiver example agrees, and so does our own verifier, with the receiver's clock passed in
    readme_verify = readme_receiver_example([old_public])
    assert readme_verify(during.body, CIMultiDict(during.headers), now)
    assert not readme_verify(after.body, CIMultiDict(after.headers), now)
    assert not readme_verify(during.body, CIMultiDict(during.headers), now + 301)
    assert verify_standard_delivery(old_public, during.body, during.headers, now=now) is None
    assert (
        verify_standard_delivery(old_public, after.body, after.headers, now=now)
        == "no v1a signature matches the body"
    )
    assert verify_standard_delivery(new_public, after.body, after.headers, now=now + 301) is not None


def test_the_built_in_receiver_verifies_v1a_with_the_public_key(env: TestEnv, engine: Engine) -> None:
    port = free_port()
    made = cli("webhooks", "create", "--name", "ed", "--url", f"http://127.0.0.1:{port}/in", "--all-events",
               "--signature", "standard-ed25519", "--generate-key", env=env.values)  # fmt: skip
    (public_key,) = PUBLIC_KEY_LINE.findall(made.out)
    other = raw_public_key(new_private_key())
    verdicts = []
    for key in (public_key, other):
        listening = subprocess.Popen(
            [str(ASSETHOOKS), "receiver", "--port", str(port), "--public-key", key],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(
                lambda: cli("webhooks", "test", "1", env=env.values).code == 0,
                timeout=20,
                what="the receiver to answer",
            )
        finally:
            listening.terminate()
            out, _ = listening.communicate(timeout=10)
        verdicts.append(out.splitlines()[0])
    assert verdicts[0].startswith("webhook.test")
    assert verdicts[0].endswith("signature ok")
    assert verdicts[1].endswith("SIGNATURE REJECTED: no v1a signature matches the body")
    wrong = cli("receiver", "--public-key", "whsk_oops", env=env.values)
    assert (wrong.code, wrong.err.strip()) == (
        2,
        "Error: --public-key takes the webhook's whpk_ public key (see `webhooks show`)",
    )
