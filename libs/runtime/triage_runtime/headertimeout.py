"""A deadline for a request's headers, which uvicorn does not have.

uvicorn's h11 protocol waits for the rest of a request's headers as long as the socket stays
open (its keep-alive timeout covers only an idle connection between answers, and is
cancelled by the first byte of the next request), so a client that sends part of its headers
and stalls, or trickles them, holds a connection forever. This protocol gives every request's
headers a deadline from when the connection opened or its previous answer was sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_LATE = b"the request headers did not arrive in time"
TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_LATE), _LATE)
)


def header_timeout_protocol(seconds: float, on_timeout: Callable[[], None]) -> type[H11Protocol]:
    """uvicorn's h11 protocol, with the request headers due within ``seconds``: a connection
    still short of them then is closed (408 first if it sent part of them) and counted with
    ``on_timeout``."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._watch_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_headers()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_header_timer()
            super().connection_lost(exc)

        def _watch_headers(self) -> None:
            """Start the clock when the connection waits for a request's headers (not
            again while they trickle in); stop it once they are in."""
            waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
            if not waiting:
                self._stop_header_timer()
            elif self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._headers_late)

        def _stop_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
                return
            on_timeout()
            partial, _closed = self.conn.trailing_data
            if partial:  # part of a request came: say why it ends
                self.transport.write(TIMED_OUT)
            self.transport.close()

    return HeaderTimeoutProtocol
