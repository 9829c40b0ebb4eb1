"""Middleware that tells the layer above when the queue itself gives a message up.

The queue keeps no retry policy of its own (the job layer decides and schedules retries),
but a broker can still refuse to run a message again: the SQLite broker's delivery cap (its
workers kept dying on it), Dramatiq's age limit, or any middleware that fails a message.
Dramatiq then *nacks* it, which moves it to the broker's dead letters (`SQLiteBroker`'s
`dead_letters` table, the `.XQ` queue on RabbitMQ and Redis). `after_nack` is therefore the
moment a message is given up, whatever the broker; `DiscardHook` passes it on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dramatiq import Broker, MessageProxy
from dramatiq.middleware import Middleware


def describe_error(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def stuffed_exception(message: MessageProxy) -> BaseException | None:
    """The exception the worker stored on the message, if any. Dramatiq keeps it in a private
    attribute until the message has been acked or nacked."""
    exception = getattr(message, "_exception", None)
    return exception if isinstance(exception, BaseException) else None


def give_up_reason(message: MessageProxy) -> str:
    """Why a nacked message was given up: the exception that failed it, if any."""
    exception = stuffed_exception(message)
    return describe_error(exception) if exception is not None else "rejected"


@dataclass(frozen=True)
class Discarded:
    """A message that will not be run again: a middleware failed it (the delivery cap, the
    age limit) or its actor is unknown."""

    message_id: str
    queue_name: str
    actor_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    reason: str


def discarded(message: MessageProxy) -> Discarded:
    return Discarded(
        message_id=message.message_id,
        queue_name=message.queue_name,
        actor_name=message.actor_name,
        args=tuple(message.args),
        kwargs=dict(message.kwargs),
        reason=give_up_reason(message),
    )


class DiscardHook(Middleware):
    """Calls `on_discard` in the worker each time a message is given up (nacked).

    Exceptions from the callback are logged by Dramatiq and do not affect the message, which
    is already in the dead letters.
    """

    def __init__(self, on_discard: Callable[[Discarded], None]) -> None:
        self.on_discard = on_discard

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        self.on_discard(discarded(message))
