"""The embedded default's broker: kombu's folder transport, with messages that appear whole.

kombu's filesystem transport creates a message file and then writes into it. A worker that lists
the folder in between moves the still-empty file away, fails to decode it and the message is lost
(seen in the test suite on a loaded machine; tests/test_folder_broker.py's race loses ~5% of
the messages with kombu's transport). Here a
message is written under a name consumers skip and renamed into place, which is atomic on one
filesystem.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

# Consumers take `<stamp>_<uuid>.<queue>.msg` only; a file being written ends in this suffix.
PARTIAL_SUFFIX = ".partial"


class Channel(filesystem.Channel):
    # kombu's filesystem channel itself names the argument differently from its base class.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # The name scheme is kombu's: consumers sort by it, so messages keep their order.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + PARTIAL_SUFFIX
        try:
            with open(partial, "wb") as file:
                file.write(dumps(payload).encode())  # type: ignore[no-untyped-call]
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


# What Celery's `broker_transport` setting takes to use this transport.
TRANSPORT_PATH = f"{__name__}:Transport"
