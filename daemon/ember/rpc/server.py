"""Build the pygls JSON-RPC server: our protocol class plus the method handlers."""

from __future__ import annotations

from collections.abc import Callable

from pygls.protocol import default_converter
from pygls.server import JsonRPCServer

from ..service import Service
from ..wire import InitializeParams
from .handlers import build_handlers, build_notification_handlers
from .protocol import EmberProtocol


def build_server(service: Service, on_initialize: Callable[[InitializeParams], None]) -> JsonRPCServer:
    server = JsonRPCServer(EmberProtocol, default_converter)
    for method, handler in build_handlers(service, on_initialize).items():
        server.feature(method)(handler)
    protocol = server.protocol
    assert isinstance(protocol, EmberProtocol)
    protocol.notifications = build_notification_handlers(service)
    return server


def new_connection(server: JsonRPCServer) -> EmberProtocol:
    """A protocol for one more client (shared daemon), with the same handlers."""
    first = server.protocol
    assert isinstance(first, EmberProtocol)
    return EmberProtocol(server, default_converter(), features=first.fm, notifications=first.notifications)
