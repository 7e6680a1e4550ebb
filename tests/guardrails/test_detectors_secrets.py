"""The `secrets` detector: each credential type found with its exact span, and a look-alike of each left
alone; key blocks, JWTs, the allow-list, generic assignments (opt-in), config errors with paths.

Every value here is made up, and assembled at run time (`_j`) so no literal in this file looks like a
live credential to a secret scanner."""

from __future__ import annotations

import base64
import json

import pytest

from runtime.config.load import ConfigError
from runtime.guardrails.detectors import secrets
from runtime.guardrails.types import Subject


def _j(*parts: str) -> str:
    return "".join(parts)


def scan(text: str, **config: object) -> list[tuple[str, str]]:
    detector = secrets.build(config, "p.config", [], 1.0)
    return [(f.type, text[f.start : f.end]) for f in detector.scan(Subject("input", [text]))]


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


JWT = _j(
    _b64({"alg": "HS256", "typ": "JWT"}),
    ".",
    _b64({"sub": "1234567890", "name": "Jane"}),
    ".",
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
)
ALNUM = "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC2eF4hJ6kL8nP0rS2uV4xY6"  # 52 mixed characters to slice from

# (type, the secret as it appears, the text around it ({} marks the secret))
TRUE_POSITIVES = [
    ("aws_access_key", _j("AKIA", "IOSFODNN7EXAMPLE"), "key id {} in the config"),
    ("aws_access_key", _j("ASIA", "Y34FZKBOKMUTVV7A"), "temporary {}."),
    ("aws_secret_key", _j("wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYEXAMPLEKEY"), "aws_secret_access_key = {}\n"),
    ("aws_secret_key", _j("wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYEXAMPLEKEY"), 'AWS_SECRET_KEY: "{}"'),
    ("jwt", JWT, "Authorization: Bearer {}"),
    ("github_token", _j("ghp", "_", ALNUM[:36]), "token={}"),
    ("github_token", _j("github", "_pat_", (ALNUM * 2)[:82]), "use {} here"),
    ("gitlab_token", _j("gl", "pat-", ALNUM[:20]), "GITLAB_TOKEN {}"),
    ("slack_token", _j("xo", "xb-", "123456789012-1234567890123-", ALNUM[:24].lower()), "slack {} ok"),
    ("slack_webhook", _j("https://hooks.slack.com/services/", "T0000000/B0000000/", ALNUM[:24]), "post to {}"),
    ("stripe_key", _j("sk", "_live_", ALNUM[:34]), "stripe {}"),
    ("openai_api_key", _j("sk", "-proj-", ALNUM, "_-", ALNUM[:40]), "OPENAI_API_KEY={}"),
    ("openai_api_key", _j("sk-", ALNUM[:20], "T3Blbk", "FJ", ALNUM[20:40]), "legacy {}"),
    ("anthropic_api_key", _j("sk-", "ant-api03-", ALNUM, ALNUM[:43], "-AA"), "x-api-key: {}"),
    ("google_api_key", _j("AI", "za", "SyD", ALNUM[:32]), "?key={}&q=1"),
    ("google_oauth_secret", _j("GOC", "SPX-", ALNUM[:28]), "client_secret {}"),
    ("huggingface_token", _j("hf", "_", ALNUM[:34]), "HF_TOKEN={}"),
    ("groq_api_key", _j("gs", "k_", (ALNUM * 2)[:52]), "groq {}"),
    ("xai_api_key", _j("xa", "i-", (ALNUM * 2)[:80]), "xai {}"),
    (
        "azure_storage_key",
        _j((ALNUM * 2)[:86], "=="),
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={};EndpointSuffix=core.windows.net",
    ),
    (
        "azure_sas_token",
        _j(ALNUM[:40], "%3D"),
        "https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&ss=b&sp=r&se=2030-01-01&sig={} done",
    ),
    ("sendgrid_key", _j("SG", ".", ALNUM[:22], ".", ALNUM[:43]), "SENDGRID {}"),
    ("pypi_token", _j("pypi-", "AgEIcHlwaS5vcmc", (ALNUM * 2)[:80]), "password = {}"),
    ("square_oauth_secret", _j("sq0", "csp-", ALNUM[:43]), "square {}"),
    ("twilio_key", _j("AC", "0123456789abcdef0123456789abcdef"), "sid {}"),
    ("mailchimp_key", _j("0123456789abcdef0123456789abcdef", "-us", "12"), "mc {}"),
]


@pytest.mark.parametrize(
    ("kind", "secret", "around"), TRUE_POSITIVES, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(TRUE_POSITIVES)]
)
def test_secret_found_with_exact_span(kind: str, secret: str, around: str) -> None:
    text = around.format(secret)
    assert scan(text) == [(kind, secret)]
    assert scan(text, types=[kind]) == [(kind, secret)]  # each type on its own too
    found = secrets.build({}, "p", [], 1.0).scan(Subject("input", [text]))
    assert secret not in repr(found) and secret[:12] not in repr(found)  # spans only, never the value


LOOKALIKES = [
    "AKIA is the prefix of an AWS access key id",
    _j("AKIA", "IOSFODNN7EXAMP"),  # too short
    _j("XAKIA", "IOSFODNN7EXAMPLE"),  # inside a longer identifier
    _j("sha = '", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "'"),  # 40 chars with no AWS context
    "eyJhbGciOi.notjson.atall-but-long-enough",  # JWT-shaped, not base64 JSON
    _j("ghp", "_", ALNUM[:20]),  # GitHub prefix, too short
    _j("gl", "pat-", "short"),
    "xoxb is how Slack bot tokens start",
    _j("sk", "_test_", ALNUM[:34]),  # Stripe test keys are not secrets
    _j("sk", "-proj-", "short-one"),
    _j("sk-", "ant-", "api03-short"),
    _j("AI", "za", "tooShort123"),
    "hf_hub_download_with_a_long_name is a function",
    _j("gs", "k_", "abc123"),
    "AccountKey=short",
    "the sig=abc parameter",
    _j("AC", "0123456789ABCDEF0123456789ABCDEF"),  # Twilio ids are lower-case hex
    "ask-ant-colony-simulation-parameters-v2",
    "https://example.com/a/very/long/path/with/nothing/secret/in/it?page=2&sort=asc",
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
    "password: hunter22",  # generic assignments are opt-in
    _j("aws_secret_access_key = ", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE"),  # 39 characters
    _j("github", "_pat_", "tooShort"),
    "the endpoint is https://hooks.slack.com/services/ (see the docs)",
    _j("GOC", "SPX-", "short"),
    "model xai-grok-2-latest and xai-org/grok-1 on the hub",
    _j("SG", ".", "short.token"),
    _j("pypi-", "AgEIcHlwaS5vcmc", "short"),
    _j("sq0", "csp-", "short"),
    _j("0123456789abcdef", "-us", "12"),  # Mailchimp's 32 hex characters are 16 here
    _j("the marker T3Blbk", "FJ alone"),
    _j("sk", "_live_", "short"),
]


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalikes_ignored(text: str) -> None:
    assert scan(text) == []


# --- key blocks ------------------------------------------------------------------------------------------

BODY = "MIIEowIBAAKCAQEAx4f2" + "Qk9z" * 16 + "\nAoGBAM" + "x7Pq" * 15


@pytest.mark.parametrize("label", ["RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED ", "DSA "])
def test_pem_private_key_block_whole_span(label: str) -> None:
    block = f"-----BEGIN {label}PRIVATE KEY-----\n{BODY}\n-----END {label}PRIVATE KEY-----"
    text = f"here is my key:\n{block}\nplease fix the parser"
    assert scan(text) == [("private_key", block)]


def test_pgp_and_putty_keys() -> None:
    pgp = f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{BODY}\n-----END PGP PRIVATE KEY BLOCK-----"
    assert scan(f"pgp {pgp} end") == [("private_key", pgp)]
    putty = f"PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nPrivate-Lines: 1\n{BODY}\nPrivate-MAC: 0a1b2c3d4e5f"
    assert scan(f"{putty}\nthanks") == [("private_key", putty)]


def test_unterminated_block_is_masked_to_the_end() -> None:
    text = f"key: -----BEGIN RSA PRIVATE KEY-----\n{BODY}"
    assert scan(text) == [("private_key", text[5:])]


def test_service_account_json_private_key() -> None:
    key = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----"
    text = json.dumps({"type": "service_account", "private_key": "KEY"}).replace("KEY", key)
    assert scan(text) == [("private_key", key)]


# --- several, parts, allow-list, types -------------------------------------------------------------------


def test_several_secrets_in_several_parts() -> None:
    aws = _j("AKIA", "IOSFODNN7EXAMPLE")
    gh = _j("ghp", "_", ALNUM[:36])
    texts = ["system prompt, nothing", f"first {aws} then {gh}", gh]
    detector = secrets.build({}, "p", [], 1.0)
    found = [(f.part, f.type, texts[f.part][f.start : f.end]) for f in detector.scan(Subject("input", texts))]
    assert found == [(1, "aws_access_key", aws), (1, "github_token", gh), (2, "github_token", gh)]


def test_allow_list_literal_and_regex() -> None:
    aws = _j("AKIA", "IOSFODNN7EXAMPLE")
    other = _j("AKIA", "ZZZZZZZZZZZZZZZZ")
    gh = _j("ghp", "_", ALNUM[:36])
    text = f"{aws} {other} {gh}"
    assert [t for t, _ in scan(text)] == ["aws_access_key", "aws_access_key", "github_token"]
    assert scan(text, allow=[aws]) == [("aws_access_key", other), ("github_token", gh)]
    assert scan(text, allow=["AKIA[A-Z0-9]*EXAMPLE", "ghp_.*"]) == [("aws_access_key", other)]
    assert scan(text, allow=["[unclosed"]) != []  # not a regex: a literal that matches nothing


def test_types_subset() -> None:
    text = _j("AKIA", "IOSFODNN7EXAMPLE ", "ghp", "_", ALNUM[:36])
    assert [t for t, _ in scan(text, types=["github_token"])] == ["github_token"]
    detector = secrets.build({}, "p", [], 1.0)
    assert detector.types == secrets.TYPES and not detector.generic


# --- generic assignments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("password=Zx9!kP2#qL7v", "Zx9!kP2#qL7v"),
        ('db_password: "q8Rt2ZmL0xVb"', "q8Rt2ZmL0xVb"),
        ("API_KEY = 'c3VwZXJzZWNyZXQxMjM0'", "c3VwZXJzZWNyZXQxMjM0"),
        ("client_secret=>Ab12Cd34Ef56Gh78", "Ab12Cd34Ef56Gh78"),
    ],
)
def test_generic_assignments_with_entropy(text: str, value: str) -> None:
    assert scan(text, entropy=True) == [("generic_secret", value)]
    assert scan(text, types=["generic_secret"]) == [("generic_secret", value)]
    assert scan(text) == []  # off unless asked for


@pytest.mark.parametrize(
    "text",
    [
        "password: hunter22",  # one character class
        "password=correcthorsebattery",
        "secret = aaaaaaaaaaaa1",  # low entropy
        "Note: the password is kept in the vault",
        "token: short",
        "ratio = 1:2",
    ],
)
def test_generic_low_entropy_or_prose_ignored(text: str) -> None:
    assert scan(text, entropy=True) == []


def test_entropy() -> None:
    assert secrets.entropy("aaaa") == 0
    assert secrets.entropy("abcd") == 2


# --- shape and config errors -----------------------------------------------------------------------------


def test_detector_shape() -> None:
    detector = secrets.build({}, "p", [], 3.0)
    assert (detector.kind, detector.remote, detector.streamable, detector.timeout_s) == ("secrets", False, True, 3.0)
    assert detector.scan(Subject("output", ["", "plain words"])) == []


def test_unknown_type_names_its_path_and_a_suggestion() -> None:
    with pytest.raises(ConfigError) as err:
        secrets.build({"types": ["jwt", "github_tokens"]}, "g.config", [], 1.0)
    assert err.value.path == "g.config.types[1]"
    assert "github_token" in err.value.message


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"type": ["jwt"]}, "c.type"),
        ({"types": "jwt"}, "c.types"),
        ({"types": []}, "c.types"),
        ({"allow": "x"}, "c.allow"),
        ({"allow": ["ok", 5]}, "c.allow[1]"),
        ({"allow": [""]}, "c.allow[0]"),
        ({"entropy": "yes"}, "c.entropy"),
    ],
)
def test_config_errors(config: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        secrets.build(config, "c", [], 1.0)
    assert err.value.path == path


def test_spans_are_character_offsets_in_non_ascii_text() -> None:
    key = _j("AKIA", "IOSFODNN7EXAMPLE")
    text = f"ключ 🔑: {key} — merci"
    assert scan(text) == [("aws_access_key", key)]


@pytest.mark.parametrize(
    "unit", ["1:", "=", "password=", "eyJ.", "x", "sk-ant-", "T3BlbkFJ", "-us", "sig=", "secret: "]
)
def test_pathological_input_is_scanned_without_findings(unit: str) -> None:
    assert scan(unit * 5000, entropy=True) == []
