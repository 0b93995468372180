"""Read-your-writes across API replicas.

Reads of the fleet are answered from memory, which each replica's relay brings up to date after a write commits
(`workers/readmodel.py`). A write's response is sent once its own replica has applied what it committed, so
reads on that replica see it; and it names the sequence number of the last event it committed, in
`X-Event-Sequence`: a read that sends it back waits (briefly) until its replica, whichever it is, has applied
that event too."""

from __future__ import annotations

from contextvars import ContextVar

from ..errors import BadRequest

HEADER = b"x-event-sequence"
# How long a read waits for its replica to apply the event it names before answering with what it has: well
# past a relay's usual lag (milliseconds), short enough that a replica cut off from the database still answers.
READ_WAIT_SECONDS = 1.0


class Written:
    """What the request being served committed before its response started: the highest sequence number of its
    events (0: none). What a response commits once started (an event stream's) no header can name."""

    __slots__ = ("answered", "sequence")

    def __init__(self) -> None:
        self.sequence = 0
        self.answered = False


_written: ContextVar[Written | None] = ContextVar("written", default=None)


def track() -> Written:
    """Start recording what this request commits (called once per request, before the app runs)."""
    written = Written()
    _written.set(written)
    return written


def note(sequence: int) -> bool:
    """A transaction committed events up to `sequence`; False unless a request's answer will name it (not in a
    job or a command, nor once the response started)."""
    written = _written.get()
    if written is None or written.answered:
        return False
    written.sequence = max(written.sequence, sequence)
    return True


def requested(value: str | None) -> int | None:
    """The sequence number a read asks to see applied: `X-Event-Sequence`, if sent."""
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit():
        raise BadRequest(
            f"X-Event-Sequence must be the sequence number a write answered with (a non-negative integer), "
            f"got {value[:40]!r}"
        )
    return int(value)
