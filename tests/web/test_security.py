"""Secure by default: the bind rule, the token, cross-site refusals (unit and real)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from svcorch.errors import UsageError
from svcorch.web.security import Guard, is_loopback, parse_bind, read_token
from tests.runtime.conftest import Stack
from tests.support import free_port
from tests.web.conftest import TOKEN, Web, env_without_token

GOOD = {"Host": "127.0.0.1:8765", "Authorization": f"Bearer {TOKEN}"}
JSON = {**GOOD, "Content-Type": "application/json"}


def _guard(host: str = "127.0.0.1") -> Guard:
    return Guard(host, 8765, TOKEN)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "127.0.0.1:8765", "Content-Type": "application/json"}, 401),
        ({**JSON, "Authorization": "Bearer wrong-token-of-the-same-size-1234"}, 401),
        ({**JSON, "Authorization": f"Basic {TOKEN}"}, 401),
        ({**JSON, "Sec-Fetch-Site": "cross-site"}, 403),
        ({**JSON, "Sec-Fetch-Site": "same-site"}, 403),
        ({**JSON, "Origin": "http://evil.example"}, 403),
        ({**JSON, "Origin": "null"}, 403),
        ({**JSON, "Host": "evil.example:8765"}, 403),  # DNS rebinding
        ({**GOOD, "Content-Type": "text/plain"}, 415),  # what a form can send
        ({**GOOD, "Content-Type": "application/x-www-form-urlencoded"}, 415),
        (GOOD, 415),
    ],
)
def test_an_action_is_refused(headers: dict[str, str], status: int) -> None:
    refusal = _guard().check_action(headers)
    assert refusal is not None and refusal.status == status


@pytest.mark.parametrize(
    "headers",
    [
        JSON,
        {**JSON, "Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8765"},
        {**JSON, "Host": "localhost:8765", "Content-Type": "application/json; charset=utf-8"},
    ],
)
def test_an_action_of_our_own_page_passes(headers: dict[str, str]) -> None:
    assert _guard().check_action(headers) is None


def test_reads_are_open_on_the_loopback_only() -> None:
    assert _guard().check_read({"Host": "127.0.0.1:8765"}) is None
    assert _guard().check_read({"Host": "[::1]:8765"}) is None
    refusal = _guard("192.0.2.7").check_read({"Host": "192.0.2.7:8765"})
    assert refusal is not None and refusal.status == 401
    assert _guard("192.0.2.7").check_read({"Host": "x", "Authorization": f"Bearer {TOKEN}"}) is None
    # the page itself holds no data: a browser gets it, then is asked the token
    assert _guard("192.0.2.7").check_page({"Host": "192.0.2.7:8765"}) is None
    refusal = _guard().check_page({"Host": "evil.example:8765"})
    assert refusal is not None and refusal.status == 403


def test_bind_parsing() -> None:
    assert parse_bind("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    assert parse_bind(":9000") == ("127.0.0.1", 9000)
    for bad in ("127.0.0.1", "host:0", "host:99999", "host:x"):
        with pytest.raises(UsageError, match="is not HOST:PORT"):
            parse_bind(bad)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("0.0.0.0")


def test_token_sources(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text(TOKEN + "\n")
    file.chmod(0o600)
    assert read_token(file, {}) == TOKEN
    assert read_token(None, {"SVCORCH_WEB_TOKEN": TOKEN}) == TOKEN
    assert read_token(None, {}) is None
    file.chmod(0o644)
    with pytest.raises(UsageError, match="readable by others; chmod 600"):
        read_token(file, {})
    with pytest.raises(UsageError, match="at least 16 characters"):
        read_token(None, {"SVCORCH_WEB_TOKEN": "short"})


def _web_run(stack: Stack, *args: str) -> tuple[int, str]:
    result = stack.run("web", *args)
    return result.returncode, result.stderr


def test_a_non_loopback_bind_without_a_token_is_refused(stack: Stack) -> None:
    from tests.web.conftest import small_stack

    small_stack(stack)
    stack.env.pop("SVCORCH_WEB_TOKEN", None)
    code, err = _web_run(stack, "--bind", f"0.0.0.0:{free_port()}")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "a host other than the loopback needs a token" in err and "Traceback" not in err
    code, err = _web_run(stack, "--bind", "nonsense")
    assert code == 2 and "is not HOST:PORT" in err


def test_real_server_refuses_actions_without_the_token(web: Web) -> None:
    web.start()
    assert web.post("/api/up", token=None).status == 401
    assert web.post("/api/up", token="wrong-token-of-the-same-size-12345").status == 401
    assert web.post("/api/up", headers={"Origin": "http://evil.example"}).status == 403
    assert web.post("/api/up", headers={"Sec-Fetch-Site": "cross-site"}).status == 403
    assert web.post("/api/up", headers={"Content-Type": "text/plain"}).status == 415
    assert web.get("/api/status", headers={"Host": "evil.example"}).status == 403
    assert web.request("OPTIONS", "/api/up").status == 405  # no CORS preflight granted
    assert "Access-Control-Allow-Origin" not in web.get("/api/status").headers
    assert not web.stack.state_dir.joinpath("state.json").exists()  # nothing was started


def test_without_a_token_one_is_made_for_this_user_only(web: Web) -> None:
    out_env = env_without_token(web.stack)
    web.start(env=out_env)
    path = web.stack.state_dir / "web.token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    made = path.read_text().strip()
    assert len(made) >= 32
    assert web.post("/api/up", token=None).status == 401
    assert web.post("/api/up", token=made).status == 200
    assert made not in web.stop()  # the token is never printed


def test_a_port_in_use_is_one_line_and_exit_2(stack: Stack) -> None:
    import socket

    from tests.web.conftest import small_stack

    small_stack(stack)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, err = _web_run(stack, "--bind", f"127.0.0.1:{port}")
    assert code == 2
    assert err.strip().splitlines() == [
        f"svcorch: --bind 127.0.0.1:{port}: cannot listen there: Address already in use"
    ]
