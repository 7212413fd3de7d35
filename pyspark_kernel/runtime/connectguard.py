"""A Spark Connect client's gRPC calls hold an interrupt, as guard holds one in a Py4J call.

gRPC's Python code takes its channel's lock with `with condition:`, and threading.Condition's
__enter__ is Python code: a KeyboardInterrupt raised by the SIGINT handler just after the lock is
taken (the handler runs at the next bytecode, before the `with` block begins) leaves the lock held
by the main thread for good. gRPC's thread that delivers every stream's responses then waits for
it forever: the next query runs on the server and its results arrive, but the cell never sees
them and the client never releases the operation (the server reports it abandoned). The main
thread, the lock's owner, still sends. Seen in about one run of the test suite in three on a busy machine.

So the main thread's first interrupt inside a gRPC call, or inside the wait for a stream's next
response, is held and raised as it returns. The interrupt's thread (ConnectDriver.interrupt) ends
such a wait at once by cancelling the stream on the client, then cancels the cell's operations on
the server by their tag. A second interrupt is raised at once, as with Py4J.

When the server dies, the calls are closed here, not the channel: gRPC can crash the process
(SIGSEGV in Channel._get_registered_call_handle) when another thread closes a channel as a call
starts on it (grpc/grpc#43455), and an intercepted channel starts every call anew. The client's
retries come through here, so they fail at once, as they would on a closed channel.
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import threading
from typing import Any

import grpc

from .guard import HeldInterrupt

CLOSED = "Cannot invoke RPC on closed channel!"  # gRPC's own words for it, which the kernel knows


class HoldInterrupts(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """The interceptor on the kernel's Spark Connect channel: every kind of call PySpark makes."""

    def __init__(self, held: HeldInterrupt) -> None:
        self.held = held
        self.awaited = None  # the stream whose next response the main thread waits for
        self.closed = False

    def cancel_awaited(self) -> None:
        """From another thread: end the main thread's wait for a response, and so its held interrupt."""
        cancel = getattr(self.awaited, "cancel", None)  # a grpc.Call's, unless another interceptor wraps it
        if cancel is not None:
            cancel()

    def close(self) -> None:
        """From another thread, as the server died: a call under way ends, and every later one
        (the client's retries too) fails at once. The channel stays open (see above)."""
        self.closed = True
        self.cancel_awaited()

    def start(self, continuation, details, request):
        if self.closed:
            raise ValueError(CLOSED)
        return self.held.call(continuation, details, request)

    def intercept_unary_unary(self, continuation, details, request):
        return self.start(continuation, details, request)

    def intercept_stream_unary(self, continuation, details, requests):  # artifacts
        return self.start(continuation, details, requests)

    def intercept_unary_stream(self, continuation, details, request):  # ExecutePlan, ReattachExecute
        return Responses(self.start(continuation, details, request), self)


class Responses:
    """A stream's responses, each waited for as a call; otherwise the stream itself (a grpc.Call)."""

    def __init__(self, stream: Any, calls: HoldInterrupts) -> None:
        self.stream = stream
        self.calls = calls

    def __iter__(self) -> Responses:
        return self

    def __next__(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return next(self.stream)
        self.calls.awaited = self.stream
        try:
            return self.calls.held.call(next, self.stream)
        finally:
            self.calls.awaited = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def channel_builder(url: str, calls: HoldInterrupts) -> Any:
    """The Spark Connect channel builder for ``url`` (PySpark's own parser of sc:// URLs), its calls
    going through ``calls``; None for a client without one (3.5), which then goes without."""
    try:
        from pyspark.sql.connect.client.core import DefaultChannelBuilder
    except ImportError:
        return None
    builder = DefaultChannelBuilder(url)
    builder.add_interceptor(calls)
    return builder
