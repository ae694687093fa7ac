"""The scrubber: what may be said of text from outside, and of an unexpected exception."""

from __future__ import annotations

import json

import pytest

from podslots.scrub import DEFAULT_LIMIT, REDACTED, described, exception_facts, scrub

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
EKS = "k8s-aws-v1.aHR0cHM6Ly9zdHMudXMtZWFzdC0xLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eQ"
B64 = "dGhpcyBpcyBhIHZlcnkgc2VjcmV0IHRva2VuIDEyMzQ1Njc4OTA="
HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        ("Unauthorized: Authorization: Bearer abc.def-ghi", "abc.def-ghi", "Unauthorized: Authorization: "),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', "dXNlcjpwYXNz", '{"authorization": "'),
        ("proxy-authorization=Bearer%20x123456", "x123456", "proxy-authorization="),
        ("invalid bearer: Bearer s3cret-value", "s3cret-value", "invalid bearer: Bearer "),
        (f"token {JWT} is expired", JWT[:20], "is expired"),
        (f"cannot verify {EKS}", "aHR0cHM6", "cannot verify"),
        ("key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE", "key  used".replace("  ", f" {REDACTED} ")),
        ("session ASIAY34FZKBOKMUTVV7A denied", "ASIAY34FZKBOKMUTVV7A", "denied"),
        (f"sha {HEX} mismatch", HEX, "mismatch"),
        (f"data {B64} refused", B64, "refused"),
        ("X-Amz-Security-Token=FwoGZXIvYXdzEJr%2F&X-Amz-Signature=ab12", "FwoGZXIvYXdzEJr", "X-Amz-Security-Token="),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI", "AWS_SECRET_ACCESS_KEY="),
        ("password: hunter2!", "hunter2", "password: "),
    ],
)
def test_what_looks_like_a_credential_is_redacted_and_the_rest_kept(text: str, gone: str, kept: str):
    out = scrub(text)
    assert gone not in out
    assert REDACTED in out
    assert kept in out


@pytest.mark.parametrize(
    "text",
    [
        'pods "terraform-a1b2c" not found',
        'pods is forbidden: User "system:serviceaccount:agents:podslots" cannot list resource "pods"',
        'poddisruptionbudgets.policy "podslots-a-very-long-pool-name-of-forty-char" already exists',
        'Operation cannot be fulfilled on pods "x": modified (uid 0b9c2f4e-1d2a-4c3b-9e8f-7a6b5c4d3e2f)',
        "a bearer token and basic auth, in prose",
        "the kubeconfig's users[0].user.tokenFile is refused: it names a file",
    ],
)
def test_ordinary_kubernetes_messages_pass_unchanged(text: str):
    assert scrub(text) == text


def test_an_exact_secret_is_redacted_wherever_it_appears_even_short_or_unlike_a_credential():
    assert scrub("echo: Bearer s3cret and again s3cret.", secrets=["Bearer s3cret", "s3cret"]) == (
        f"echo: {REDACTED} and again {REDACTED}."
    )
    assert scrub("a b", secrets=["", "a"]) == "a b"  # nothing shorter than MIN_SECRET_LEN is looked for


def test_a_long_message_is_cut_at_a_word_and_never_leaves_part_of_a_token():
    text = "x " * 95 + "prefix-" + "Q" * 40 + " tail"
    out = scrub(text)
    assert len(out) <= DEFAULT_LIMIT + len(" [cut]")
    assert out.endswith("[cut]")
    assert "Q" not in out  # the cut word went whole
    assert "prefix" not in out


def test_control_characters_become_spaces_so_a_log_line_stays_one_line():
    assert scrub("first\nsecond\r\x00third\u2028fourth") == "first second  third fourth"


def test_scrub_accepts_anything_printable():
    assert scrub(json.loads('{"m": 1}')) == "{'m': 1}"


def raise_with_text(text: str) -> None:
    try:
        raise KeyError(text)
    except KeyError as inner:
        raise ValueError(f"Invalid header value b'{text}'") from inner


def test_exception_facts_name_types_and_places_but_never_the_message():
    # Given an exception whose text (and whose cause's text) quotes a token
    with pytest.raises(ValueError, match="Invalid header value") as raised:
        raise_with_text("Bearer s3cret\n")
    # When it is described for the log and the history
    facts = exception_facts(raised.value)
    line = described(raised.value, "the step failed unexpectedly")
    # Then the type, the cause's type and the places are there, and the text is not
    assert facts["error_type"] == "ValueError"
    assert facts["caused_by"] == ["KeyError"]
    assert facts["where"][-1].startswith(f"{__name__}:")
    assert facts["where"][-1].endswith(" raise_with_text")
    assert line == "ValueError: the step failed unexpectedly"
    assert "s3cret" not in json.dumps(facts) + line


def test_exception_facts_name_a_first_party_type_by_its_module():
    from podslots.errors import NotFound

    assert exception_facts(NotFound("x"))["error_type"] == "podslots.errors.NotFound"
