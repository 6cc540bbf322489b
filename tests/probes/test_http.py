from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from tests.probes.helpers import ATTEMPT, TOLERANCE, attempt, options, timed_attempt
from tests.support import free_port, silent_tcp_server

SECRET_TOKEN = "http-s3cret-token"


class Handler(http.server.BaseHTTPRequestHandler):
    """/status/<code> answers that code; /echo-auth puts the Authorization header in a 500."""

    def do_GET(self) -> None:
        if self.path.startswith("/status/"):
            code = int(self.path.rsplit("/", 1)[1])
            body = f"answered {code}\n".encode()
            self.send_response(code)
            if 300 <= code < 400:
                self.send_header("Location", "/login")
        elif self.path == "/echo-auth":
            body = f"bad credentials {self.headers.get('Authorization')}".encode()
            self.send_response(500)
        elif self.path == "/health":
            body = b'{"status": "ok", "db": "up"}'
            self.send_response(200)
        else:
            body = b"not here"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_2xx_passes(server: str) -> None:
    result = attempt("http", url=f"{server}/status/200")
    assert result.ok, result.detail
    assert result.detail == "HTTP 200 OK"


def test_redirect_counts_as_ready_and_is_not_followed(server: str) -> None:
    result = attempt("http", url=f"{server}/status/302")
    assert result.ok, result.detail
    assert result.detail == "HTTP 302 Found"


def test_unaccepted_status_is_retryable_with_the_body(server: str) -> None:
    result = attempt("http", url=f"{server}/status/503")
    assert not result.ok
    assert result.retryable
    assert result.detail == "HTTP 503 Service Unavailable: answered 503"


def test_status_list_narrows_what_is_accepted(server: str) -> None:
    assert not attempt("http", url=f"{server}/status/302", status=[200, "204"]).ok
    assert attempt("http", url=f"{server}/status/204", status=[200, "204"]).ok
    assert attempt("http", url=f"{server}/status/404", status="400-404").ok


def test_body_regex(server: str) -> None:
    assert attempt("http", url=f"{server}/health", body=r'"db":\s*"up"').ok
    result = attempt("http", url=f"{server}/health", body=r'"db":\s*"down"')
    assert not result.ok
    assert result.retryable
    assert "body does not match" in result.detail


def test_head(server: str) -> None:
    result = attempt("http", url=f"{server}/anything", method="HEAD")
    assert result.ok, result.detail


def test_secret_header_never_appears_in_the_detail(server: str) -> None:
    result = attempt(
        "http", url=f"{server}/echo-auth", headers={"Authorization": f"Bearer {SECRET_TOKEN}"}
    )
    assert not result.ok
    assert result.detail == "HTTP 500 Internal Server Error: bad credentials ***"
    assert SECRET_TOKEN not in result.detail


def test_closed_port_is_retryable() -> None:
    result = attempt("http", url=f"http://127.0.0.1:{free_port()}/")
    assert not result.ok
    assert result.retryable
    assert result.detail == "Connection refused"


def test_silent_server_times_out_on_time() -> None:
    with silent_tcp_server() as port:
        result, took = timed_attempt("http", url=f"http://127.0.0.1:{port}/")
    assert not result.ok
    assert result.retryable
    assert ATTEMPT * 0.9 <= took < ATTEMPT * TOLERANCE


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same handler over TLS with a fresh self-signed certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_untrusted_certificate_is_fatal(tls_server: str) -> None:
    result = attempt("http", url=f"{tls_server}/status/200")
    assert not result.ok
    assert not result.retryable
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail


def test_verify_tls_false_accepts_it(tls_server: str) -> None:
    result = attempt("http", url=f"{tls_server}/status/200", verify_tls=False)
    assert result.ok, result.detail


def test_target_hides_url_password() -> None:
    chosen = options("http", url="https://ops:pw@app.local/health", method="HEAD")
    assert chosen.target() == "HEAD https://ops:***@app.local/health"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "ftp://127.0.0.1/"}, "http:// or https://"),
        ({"url": "http:///path"}, "no host"),
        ({"url": "http://h/", "status": ["2xy"]}, "invalid status '2xy'"),
        ({"url": "http://h/", "status": [700]}, "100 to 599"),
        ({"url": "http://h/", "status": []}, "at least one"),
        ({"url": "http://h/", "body": "(unclosed"}, "invalid body regex"),
        ({"url": "http://h/", "method": "HEAD", "body": "ok"}, "HEAD response has no body"),
        ({"url": "http://h/", "method": "POST"}, "method"),
    ],
)
def test_bad_options_fail_at_load(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        options("http", **values)
