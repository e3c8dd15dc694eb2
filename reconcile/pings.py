"""Healthchecks-style pings: a POST with a deadline for the whole request.

Whoever runs the endpoint (or sits between) writes its answer, so the answer
is input: one that trickles in, is not HTTP, or redirects to another scheme
or host ends the attempt with a warning, never with an exception or a wait
past the deadline (curl's `-m`). The URL is a secret (whoever knows it can
ping the check): messages show its scheme, host and port alone.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import urllib.request

# Seconds one attempt may take, from the first byte sent to the last read.
PING_DEADLINE = 10.0
PING_ATTEMPTS = 2
PING_RETRY_DELAY = 1.0
USER_AGENT = "hardsnap"
# One line, and not the whole of a long error: healthchecks keeps 10 KB.
BODY_LIMIT = 4096
# What each ping says, by the suffix of its URL.
PING_NAMES = {"": "success", "/start": "start", "/fail": "fail"}


def ping(url: str, suffix: str, body: str) -> str | None:
    """POST `body` to `url` + `suffix` ("" for success, "/start", "/fail"),
    trying twice, each attempt ended at PING_DEADLINE; return a warning when
    it did not get through, else None. Never raises (but KeyboardInterrupt)."""
    data = " ".join(body.split())[:BODY_LIMIT].encode("utf-8", "replace")
    reason = ""
    for attempt in range(PING_ATTEMPTS):
        if attempt:
            time.sleep(PING_RETRY_DELAY)
        failure = Attempt(url + suffix, data).run(PING_DEADLINE)
        if failure is None:
            return None
        reason = failure
    what = PING_NAMES.get(suffix, suffix)
    return f"ping {shown(url)} ({what}) failed after {PING_ATTEMPTS} attempts: {reason}"


def shown(url: str) -> str:
    """The URL as messages show it: scheme, host and port, without the
    credentials, path and query that make it a secret."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "(a malformed URL)"
    if ":" in host:
        host = f"[{host}]"
    text = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return "".join(character if character.isprintable() else "?" for character in text)


def origin(url: str) -> tuple[str, str, int | None]:
    """What a redirect must keep: scheme, host and port (the default port
    of the scheme when none is given)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), parts.port or default


class RefusedRedirect(Exception):
    """The endpoint redirected to another scheme, host or port."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class Attempt:
    """One POST, run in a thread of its own so that the caller's wait ends
    at the deadline whatever the other end does. Each socket it opens is
    duplicated here: shutting the duplicate down wakes a read that still
    waits, and the thread then ends by itself."""

    def __init__(self, address: str, data: bytes) -> None:
        self.address = address
        self.data = data
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.abandoned = False
        self.finished = threading.Event()
        self.failure: str | None = None

    def run(self, deadline: float) -> str | None:
        """Send the request; return why it failed, or None."""
        thread = threading.Thread(target=self._send, name="hardsnap-ping", daemon=True)
        thread.start()
        try:
            on_time = self.finished.wait(deadline)
        finally:
            self._abandon()
        if not on_time:
            return f"no complete answer within {deadline:g} s"
        return self.failure

    def _abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            sockets, self.sockets = self.sockets, []
        for duplicate in sockets:
            with contextlib.suppress(OSError):  # the other end closed it first
                duplicate.shutdown(socket.SHUT_RDWR)
            duplicate.close()

    def _send(self) -> None:
        try:
            self._post()
        except BaseException as error:  # a thread has no one to raise to
            self.failure = describe(error)
        finally:
            self.finished.set()

    def _post(self) -> None:
        # Loaded only where a ping is configured: it costs a run 28 ms to load.
        import urllib.request

        opener = urllib.request.build_opener(*_handlers(self))
        request = urllib.request.Request(
            self.address,
            data=self.data,
            method="POST",
            headers={"User-Agent": USER_AGENT, "Content-Type": "text/plain; charset=utf-8"},
        )
        with opener.open(request, timeout=PING_DEADLINE) as response:
            response.read(BODY_LIMIT)

    def connect(
        self, address: tuple[str, int], timeout: float | None, source: Any = None
    ) -> socket.socket:
        """socket.create_connection for the request's connections, keeping a
        duplicate of each; none once the attempt was abandoned."""
        connection = socket.create_connection(address, timeout, source)
        with self.lock:
            if not self.abandoned:
                self.sockets.append(connection.dup())
                return connection
        connection.close()
        raise TimeoutError("the ping was abandoned at its deadline")


def _handlers(attempt: Attempt) -> list[urllib.request.BaseHandler]:
    """urllib's HTTP, HTTPS and redirect handlers, connecting through
    `attempt` and following redirects to the same scheme, host and port only."""
    import http.client
    import urllib.request

    class Connection(http.client.HTTPConnection):
        def __init__(self, *arguments: Any, **options: Any) -> None:
            super().__init__(*arguments, **options)
            self._create_connection = attempt.connect

    class SecureConnection(http.client.HTTPSConnection):
        def __init__(self, *arguments: Any, **options: Any) -> None:
            super().__init__(*arguments, **options)
            self._create_connection = attempt.connect

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, request: urllib.request.Request) -> Any:
            return self.do_open(Connection, request)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, request: urllib.request.Request) -> Any:
            return self.do_open(SecureConnection, request)

    class SameOrigin(urllib.request.HTTPRedirectHandler):
        def redirect_request(
            self,
            request: urllib.request.Request,
            answer: Any,
            code: int,
            message: str,
            headers: Any,
            url: str,
        ) -> urllib.request.Request | None:
            if origin(url) != origin(request.full_url):
                answer.close()
                raise RefusedRedirect(url)
            return super().redirect_request(request, answer, code, message, headers, url)

    return [Handler(), SecureHandler(), SameOrigin()]


def describe(error: BaseException) -> str:
    """Why an attempt failed, in words that quote nothing the other end
    sent (its status phrase, a garbled line) and nothing of the URL."""
    import http.client
    import urllib.error
    from http import HTTPStatus

    if isinstance(error, RefusedRedirect):
        return f"redirected to {shown(error.url)}, another scheme, host or port: not followed"
    if isinstance(error, urllib.error.HTTPError):
        try:
            phrase = HTTPStatus(error.code).phrase
        except ValueError:
            phrase = "(an unknown status)"
        return f"HTTP {error.code} {phrase}"
    if isinstance(error, urllib.error.URLError):
        error = error.reason if isinstance(error.reason, BaseException) else error
    if isinstance(error, http.client.InvalidURL | ValueError):
        return "the URL is malformed"
    if isinstance(error, http.client.HTTPException):
        return f"the answer is not HTTP ({type(error).__name__})"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__
