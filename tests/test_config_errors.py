"""A bad config.json stops start-up with one clear line naming the field path, a non-zero exit
code, and never a traceback."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeOpenAI, Reply
from harness import StartGateway, make_config, openai_provider, run_to_exit

GOOD = make_config({"openai": openai_provider("http://127.0.0.1:9")})


def broken(path: str, value: Any) -> dict[str, Any]:
    """GOOD with the field at dotted `path` (list indexes as numbers) set to `value`."""
    config = copy.deepcopy(GOOD)
    node: Any = config
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return config


def assert_clean_failure(code: int, out: str, err: str, *needles: str) -> str:
    text = out + err
    assert code != 0, f"start-up should fail\n{text}"
    assert "Traceback" not in text, f"a config error must not print a traceback\n{text}"
    lines = [line for line in text.splitlines() if all(n in line for n in needles)]
    assert lines, f"no single output line names {needles}\n{text}"
    return lines[0]


def test_invalid_json(app_dir: Path) -> None:
    code, out, err = run_to_exit(app_dir, config='{"providers": {"openai": {"keys": [}')
    text = out + err
    assert code != 0
    assert "Traceback" not in text, text
    assert "config.json" in text or "JSON" in text, text


@pytest.mark.parametrize(
    ("path", "value", "needles"),
    [
        ("providers.openai.network_config.max_retries", "three", ("providers.openai.network_config.max_retries",)),
        (
            "providers.openai.network_config.default_request_timeout_in_seconds",
            [30],
            ("providers.openai.network_config.default_request_timeout_in_seconds",),
        ),
        ("providers.openai.keys.0.weight", "heavy", ("providers.openai.keys", "weight")),
        ("providers.openai.keys.0.models", "gpt-4o", ("providers.openai.keys", "models")),
        ("providers.openai.keys", {"value": "sk"}, ("providers.openai.keys",)),
        ("client.drop_excess_requests", "yes please", ("client.drop_excess_requests",)),
        ("client.max_request_body_size_mb", "big", ("client.max_request_body_size_mb",)),
        ("providers", ["openai"], ("providers",)),
    ],
    ids=["max_retries-str", "timeout-list", "weight-str", "models-str", "keys-obj", "drop-str", "bodysize-str",
         "providers-list"],
)  # fmt: skip
def test_wrong_type_names_the_field(app_dir: Path, path: str, value: Any, needles: tuple[str, ...]) -> None:
    code, out, err = run_to_exit(app_dir, config=broken(path, value))
    assert_clean_failure(code, out, err, *needles)


def test_concurrency_wrong_type(app_dir: Path) -> None:
    config = copy.deepcopy(GOOD)
    config["providers"]["openai"]["concurrency_and_buffer_size"] = {"concurrency": "many", "buffer_size": 10}
    code, out, err = run_to_exit(app_dir, config=config)
    assert_clean_failure(code, out, err, "providers.openai.concurrency_and_buffer_size.concurrency")


def test_missing_env_secret_is_named(start_gateway: StartGateway) -> None:
    # Issue 9 item 18: as in Go Bifrost, the key is skipped (not fatal) and the warning names the variable.
    config = broken("providers.openai.keys.0.value", "env.TEST_UNSET_SECRET_FOR_BIFROST")
    gateway = start_gateway(config, env={})
    err = gateway.stderr_path.read_text(errors="replace")
    assert "providers.openai.keys[0]" in err and "TEST_UNSET_SECRET_FOR_BIFROST" in err, err


def test_go_style_backoff_names_are_accepted(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    provider = openai_provider(fake_openai.url, max_retries=1)
    network = provider["network_config"]
    del network["retry_backoff_initial_ms"], network["retry_backoff_max_ms"]
    network["retry_backoff_initial"] = 50
    network["retry_backoff_max"] = 500
    gateway = start_gateway(make_config({"openai": provider}))
    fake_openai.enqueue(Reply.server_error(500))
    with gateway.client() as client:
        answer = client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert answer.choices[0].message.content == "fake-openai: x"
    assert len(fake_openai.requests) == 2


def test_valid_config_starts(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    config = make_config({"openai": openai_provider(fake_openai.url, concurrency=10, buffer_size=20)})
    config["client"].update({"initial_pool_size": 500, "log_retention_days": 7, "max_request_body_size_mb": 5})
    gateway = start_gateway(config)
    assert gateway.running()
