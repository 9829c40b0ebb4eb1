"""Middleware that lets the job layer see why a message failed and when it was given up.

Dramatiq's `Retries` middleware re-enqueues a failed message with a delay until
`max_retries` is reached; then it marks the message failed and the worker *nacks* it, which
moves it to the broker's dead letters. `after_nack` is therefore the moment a job is
discarded, whatever the broker. `AttemptErrors` keeps the error of every failed attempt in
the message itself, so that the errors travel with the retries and are all there at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dramatiq import Broker, MessageProxy
from dramatiq.middleware import Middleware

#: The message option that holds one line per failed attempt, oldest first.
ERRORS_OPTION = "errors"


def describe_error(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def stuffed_exception(message: MessageProxy) -> BaseException | None:
    """The exception the worker stored on the message, if any. Dramatiq keeps it in a private
    attribute until the message has been acked or nacked."""
    exception = getattr(message, "_exception", None)
    return exception if isinstance(exception, BaseException) else None


def attempt_errors(message: MessageProxy) -> list[str]:
    errors = message.options.get(ERRORS_OPTION)
    return [str(error) for error in errors] if isinstance(errors, list) else []


class AttemptErrors(Middleware):
    """Appends the error of each failed attempt to `message.options["errors"]`.

    It must come *after* `Retries` in the broker's middleware list: Dramatiq calls the
    `after_*` hooks in reverse order, so this one runs first and the retry that `Retries`
    enqueues already carries the new error.
    """

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is not None:
            message.options[ERRORS_OPTION] = [*attempt_errors(message), describe_error(exception)]


@dataclass(frozen=True)
class Discarded:
    """A message that will not be run again: its retries are exhausted, its actor raised an
    exception listed in `throws`, it named an unknown actor, or its worker kept dying."""

    message_id: str
    queue_name: str
    actor_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    retries: int
    errors: list[str]


def discarded(message: MessageProxy) -> Discarded:
    errors = attempt_errors(message)
    exception = stuffed_exception(message)
    # Errors raised outside the actor (unknown actor, delivery limit) never reach
    # AttemptErrors; the last one is still on the message.
    if exception is not None and (not errors or errors[-1] != describe_error(exception)):
        errors.append(describe_error(exception))
    return Discarded(
        message_id=message.message_id,
        queue_name=message.queue_name,
        actor_name=message.actor_name,
        args=tuple(message.args),
        kwargs=dict(message.kwargs),
        retries=int(message.options.get("retries", 0)),
        errors=errors,
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
