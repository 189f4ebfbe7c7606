"""Request/reply from outside: the reply addresses an ingress gives the messages of waiting requests.

A request that waits for an answer sends its message with a caller of function type REPLY_TYPENAME and
an id of its own. Such an address has no function behind it: the runtime hands whatever a function
sends to it to the ReplySink (the ingress), which answers the waiting request once the epoch holding
the reply has committed, so an answer never shows effects that a crash could still undo. When such a
message parks its address (or reaches one that is parked), the sink is told at once, so that the request
need not wait its full time for a reply that cannot come.
"""

from __future__ import annotations

import typing

from pystatefun.runtime.envelope import Envelope
from pystatefun.runtime.epoch import Epoch

REPLY_TYPENAME = "pystatefun/reply"


def waiting_request(envelope: Envelope) -> str | None:
    """The reply id of the request that waits for an answer to ``envelope`` (its caller is a reply
    address), else None."""
    caller = envelope.caller
    return caller.id if caller is not None and caller.typename == REPLY_TYPENAME else None


class ReplySink(typing.Protocol):
    def reply(self, epoch: Epoch, envelope: Envelope) -> str | None:
        """Takes a message sent to a reply address into ``epoch``; or says why it cannot (the reason
        becomes a dead letter): its request was answered already, or nothing waits for it."""
        ...

    def parked(self, reply_id: str, where: str, reason: str) -> None:
        """The message of the request waiting on ``reply_id`` is held at the parked address ``where``:
        no reply comes until an operator resumes it, so the request can be answered now."""
        ...
