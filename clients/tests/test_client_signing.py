"""SigV4, API keys and unsigned requests, as they arrive at a server.

The expected Authorization header is computed here without botocore: `sign_by_hand` is SigV4
header signing written out from the AWS specification, first checked against AWS's published
"get-vanilla" example, then applied to what the scripted server received. botocore signs at
`botocore.auth.get_current_datetime()`, frozen here with `unittest.mock.patch`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.credentials import Credentials, ReadOnlyCredentials
from conftest import Scripted

from podslots_client import ApiKey, CannotSign, QueueClient, SigV4

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SIGNED_AT = datetime(2030, 1, 2, 3, 4, 5)  # botocore's clock is naive UTC
TASK = {"task_id": "run:42", "pool": "tf", "pod": "tf-a", "slot": "s0", "task_type": "plan", "status": "running"}


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def sign_by_hand(
    *,
    method: str,
    path: str,
    headers: dict[str, str],
    payload: bytes,
    region: str,
    service: str,
    access_key: str,
    secret_key: str,
    amz_date: str,
) -> str:
    """The Authorization header of a request, `headers` being the signed ones (lower-case names).

    Outside S3 the canonical URI is each segment encoded twice: the path as sent, encoded once more.
    """
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    signed = ";".join(sorted(headers))
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in sorted(headers))
    canonical_request = "\n".join(
        [method, quote(path, safe="/~"), "", canonical_headers, signed, hashlib.sha256(payload).hexdigest()]
    )
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{secret_key}".encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"


@contextmanager
def botocore_time(at: datetime = SIGNED_AT) -> Iterator[None]:
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        yield


def test_the_hand_signer_reproduces_the_aws_published_get_vanilla_example() -> None:
    # AWS Signature Version 4 test suite, "get-vanilla".
    header = sign_by_hand(
        method="GET",
        path="/",
        headers={"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"},
        payload=b"",
        region="us-east-1",
        service="service",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        amz_date="20150830T123600Z",
    )
    assert header.endswith("Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")


def test_a_status_report_carries_the_sigv4_signature_of_exactly_what_arrived(scripted: Scripted) -> None:
    # Given fixed credentials with a session token, a fixed time, and a task id that needs encoding
    scripted.script((200, {**TASK, "status": "success", "changed": True}, {}))
    creds = Credentials(ACCESS_KEY, SECRET_KEY, "session-token")
    client = QueueClient(scripted.url, auth=SigV4("eu-west-1", credentials=creds))

    # When the queue reports a status
    with botocore_time():
        client.set_status("run:42", "success")

    # Then the server got the signature the specification gives for that method, path, body and headers
    (request,) = scripted.received
    assert request.path == "/v1/tasks/run%3A42/status"
    names = ["accept", "content-type", "host", "x-amz-date", "x-amz-security-token"]
    expected = sign_by_hand(
        method="PUT",
        path=request.path,
        headers={name: request.headers[name] for name in names},
        payload=request.body,
        region="eu-west-1",
        service="execute-api",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        amz_date="20300102T030405Z",
    )
    assert request.headers["authorization"] == expected
    assert request.headers["x-amz-date"] == "20300102T030405Z"
    assert request.headers["x-amz-security-token"] == "session-token"
    assert request.body == b'{"status": "success"}'


class RotatingCredentials:
    """What botocore's refreshable credentials (IRSA, Pod Identity) look like: frozen on each read."""

    def __init__(self) -> None:
        self.reads = 0

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        self.reads += 1
        return ReadOnlyCredentials(f"AKID{self.reads}", SECRET_KEY, None)


def test_credentials_are_read_again_for_every_request_and_every_retry(scripted: Scripted) -> None:
    # Given credentials that rotate, and a first attempt that fails with a 502
    scripted.script((502, {"message": "Internal server error"}, {}), (200, TASK, {}))
    creds = RotatingCredentials()
    client = QueueClient(scripted.url, auth=SigV4("us-east-1", credentials=creds), sleep=lambda s: None)

    # When the queue asks where a task is
    with botocore_time():
        client.get_task("run:42")

    # Then each attempt was signed with the credentials of its moment
    first, second = (r.headers["authorization"] for r in scripted.received)
    assert "Credential=AKID1/" in first
    assert "Credential=AKID2/" in second


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://a1b2c3.execute-api.eu-west-1.amazonaws.com/v1", "eu-west-1"),
        ("https://a1b2c3.execute-api.cn-north-1.amazonaws.com.cn/v1", "cn-north-1"),
    ],
)
def test_the_region_is_read_from_an_execute_api_host(url: str, region: str) -> None:
    assert SigV4().region_for(url) == region


def test_a_custom_domain_takes_botocores_configured_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert SigV4().region_for("https://podslots.example.com/v1") == "ap-south-1"


def test_no_credentials_is_a_cannot_sign_error_before_anything_is_sent(scripted: Scripted) -> None:
    class NoSession:
        def get_credentials(self) -> None:
            return None

    client = QueueClient(scripted.url, auth=SigV4("us-east-1", session=NoSession()))
    with pytest.raises(CannotSign, match="no AWS credentials"):
        client.get_task("run-1")
    assert scripted.received == []


def test_an_api_key_travels_in_x_api_key_and_never_in_a_repr(scripted: Scripted) -> None:
    scripted.script((200, TASK, {}))
    client = QueueClient(scripted.url, auth=ApiKey("k3y-s3cret"))
    client.get_task("run:42")
    (request,) = scripted.received
    assert request.headers["x-api-key"] == "k3y-s3cret"
    assert "authorization" not in request.headers
    assert "k3y-s3cret" not in repr(client)


def test_auth_none_sends_the_request_unsigned(scripted: Scripted) -> None:
    scripted.script((200, TASK, {}))
    QueueClient(scripted.url, auth=None).get_task("run:42")
    headers: dict[str, Any] = scripted.received[0].headers
    assert not {"authorization", "x-amz-date", "x-api-key"} & set(headers)
