"""Ping endpoints that do not behave: real TCP servers on loopback addresses
that trickle their answer, answer something that is not HTTP, or redirect
elsewhere. Whatever they do, apply goes on, within the deadline, and says
so without the URL's secret path."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.world.cli import run
from tests.world.clock import at, name_of
from tests.world.site import Site, new_site, write_config

SECRET_PATH = "/ping/5a0e-secret"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"


@dataclass
class Endpoint:
    """A TCP server answering the n-th connection (from 0) with
    `answer(connection, n)`; it records the path each request asked for."""

    answer: Callable[[socket.socket, int], None]
    host: str = "127.0.0.1"
    port: int = 0
    paths: list[str] = field(default_factory=list)
    connections: int = 0

    @contextlib.contextmanager
    def serving(self) -> Iterator[Endpoint]:
        listener = socket.create_server((self.host, 0))
        self.port = listener.getsockname()[1]
        stopped = threading.Event()

        def accept() -> None:
            while not stopped.is_set():
                with contextlib.suppress(OSError):
                    connection, _ = listener.accept()
                    number = self.connections
                    self.connections += 1
                    threading.Thread(
                        target=self._answer, args=(connection, number), daemon=True
                    ).start()

        threading.Thread(target=accept, daemon=True).start()
        try:
            yield self
        finally:
            stopped.set()
            listener.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _answer(self, connection: socket.socket, number: int) -> None:
        with connection, contextlib.suppress(OSError):
            self.answer(connection, number)

    def read_request(self, connection: socket.socket) -> None:
        """Read one request to the end of its body; record its path."""
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(4096)
            if not chunk:
                return
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.paths.append(lines[0].split()[1])
        length = next(
            (
                int(line.split(":")[1])
                for line in lines
                if line.lower().startswith("content-length")
            ),
            0,
        )
        while len(body) < length:
            body += connection.recv(4096)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return new_site(tmp_path)


@pytest.fixture
def endpoints() -> Iterator[Callable[..., Endpoint]]:
    """Start Endpoints (`endpoints(answer, host=...)`), stopped at the end."""
    with contextlib.ExitStack() as stack:

        def start(
            answer: Callable[[socket.socket, int], None], host: str = "127.0.0.1"
        ) -> Endpoint:
            return stack.enter_context(Endpoint(answer, host).serving())

        yield start


@pytest.mark.slow
def test_an_answer_trickling_in_is_given_up_at_the_deadline_and_tried_again(
    site: Site, endpoints: Callable[..., Endpoint]
) -> None:
    """A byte every second keeps every socket read short of its timeout:
    only a deadline for the whole request ends the first attempt."""

    def answer(connection: socket.socket, number: int) -> None:
        endpoint.read_request(connection)
        if number > 0:
            connection.sendall(OK)
            return
        connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slowly: ")
        while True:  # until hardsnap hangs up
            connection.sendall(b"a")
            time.sleep(1)

    endpoint = endpoints(answer)
    site.write(ping_url=endpoint.url + SECRET_PATH)
    # Without a deadline the apply never ends; 60 s is only a bound on the test.
    done = run(["apply", "-c", str(site.config)], site.environment(at(0)), timeout=60)
    assert done.returncode == 0, done
    assert site.snapshots() == [name_of(at(0))]
    start, success = SECRET_PATH + "/start", SECRET_PATH
    assert endpoint.paths == [start, start, success], done
    assert "ping" not in done.stderr, done  # the second attempt got through


def test_an_answer_that_is_not_http_is_a_warning_and_every_resource_runs(
    site: Site, endpoints: Callable[..., Endpoint], tmp_path: Path
) -> None:
    def answer(connection: socket.socket, number: int) -> None:
        endpoint.read_request(connection)
        connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\x1b]0;owned\x07\r\n")

    endpoint = endpoints(answer)
    url = endpoint.url + SECRET_PATH
    second = {**site.values, "name": "s", "target_path": str(tmp_path / "dst2"), "ping_url": url}
    write_config(site.config, {**site.values, "ping_url": url}, second)
    done = site.apply(at(0))
    assert done.returncode == 0, done
    assert site.snapshots() == [name_of(at(0))]
    assert (tmp_path / "dst2" / name_of(at(0))).is_dir()
    for name in ("r", "s"):
        for what in ("start", "success"):
            warning = (
                f"{name}: ping {endpoint.url} ({what}) failed after 2 attempts: "
                "the answer is not HTTP"
            )
            assert warning in done.stderr, done
    assert "secret" not in done.stderr and "\x1b" not in done.stderr, done


@pytest.mark.parametrize("elsewhere", ["another host", "another port", "another scheme"])
def test_a_redirect_to_another_host_port_or_scheme_is_not_followed(
    site: Site, endpoints: Callable[..., Endpoint], elsewhere: str
) -> None:
    def record(connection: socket.socket, number: int) -> None:
        target.read_request(connection)
        connection.sendall(OK)

    target = endpoints(record, host="127.0.0.2" if elsewhere == "another host" else "127.0.0.1")
    location = {
        "another host": f"{target.url}/elsewhere",
        "another port": f"{target.url}/elsewhere",
        "another scheme": f"ftp://127.0.0.1:{target.port}/elsewhere",
    }[elsewhere]

    def redirect(connection: socket.socket, number: int) -> None:
        endpoint.read_request(connection)
        connection.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        )

    endpoint = endpoints(redirect)
    site.write(ping_url=endpoint.url + SECRET_PATH)
    done = site.apply(at(0))
    assert done.returncode == 0, done
    assert site.snapshots() == [name_of(at(0))]
    assert target.connections == 0, f"the redirect to {location} was followed"
    shown = location.removesuffix("/elsewhere")
    assert f"redirected to {shown}, another scheme, host or port: not followed" in done.stderr
    assert "secret" not in done.stderr and "elsewhere" not in done.stderr, done


def test_a_ping_url_validate_rejects_is_said_without_its_path(site: Site) -> None:
    site.write(ping_url="htps://user:pass@hc-ping.example/" + SECRET_PATH.strip("/"))
    done = site.cli("validate")
    assert done.returncode == 2, done
    assert '"ping_url" must be an http:// or https:// URL' in done.stderr, done
    assert "htps://hc-ping.example/" in done.stderr, done
    assert SECRET_PATH.strip("/") not in done.stderr and "pass" not in done.stderr, done
