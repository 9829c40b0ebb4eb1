"""Times as the contracts carry them: unix seconds (as stored) to google.protobuf.Timestamp."""

from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(unix: float | None) -> Timestamp | None:
    """The Timestamp of a unix time; None stays None (an unset field)."""
    if unix is None:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(unix * 1e9))
    return stamp


def now() -> Timestamp:
    stamp = timestamp(time.time())
    assert stamp is not None
    return stamp
