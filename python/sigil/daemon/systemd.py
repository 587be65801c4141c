"""systemd's notify protocol (``sd_notify``) over ``$NOTIFY_SOCKET`` with a plain datagram socket.

Under ``Type=notify`` systemd waits for ``READY=1``; with ``WatchdogSec=`` it restarts the service when
``WATCHDOG=1`` stops arriving. The daemon sends both from the pass path, so a process that is alive
but no longer completing passes is restarted just like a dead one.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends notify messages when ``NOTIFY_SOCKET`` is set; a no-op otherwise.

    Sending never raises: a supervisor that went away must not take the daemon down with it.
    """

    def __init__(self, address: str | None) -> None:
        self._address: str | None = None
        self._sock: socket.socket | None = None
        self._warned = False
        if address:
            # A leading '@' names a socket in the abstract namespace (a NUL byte on the wire).
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SystemdNotifier:
        """A notifier for ``$NOTIFY_SOCKET`` (inactive when unset)."""
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        """True when running under a supervisor that listens."""
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        """Sends ``KEY=value`` lines (``notify(READY=1, STATUS="...")``); True when sent."""
        if self._sock is None or self._address is None:
            return False
        msg = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            self._sock.sendto(msg, self._address)
        except OSError as e:
            if not self._warned:
                log.warning("systemd notify to %r failed: %s", self._address, e)
                self._warned = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """``READY=1``: start-up is complete."""
        return self.notify(READY=1, STATUS=status) if status else self.notify(READY=1)

    def watchdog(self, status: str = "") -> bool:
        """``WATCHDOG=1``: a pass has completed (keep-alive)."""
        return self.notify(WATCHDOG=1, STATUS=status) if status else self.notify(WATCHDOG=1)

    def stopping(self) -> bool:
        """``STOPPING=1``: a clean stop has begun."""
        return self.notify(STOPPING=1)

    def close(self) -> None:
        """Closes the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
