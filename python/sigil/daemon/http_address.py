"""Is the daemon's HTTP address usable? Checked before anything starts, so a clash or an unsafe
address is one line naming the setting to change (exit 2) instead of a bind error after the
database has been written to.

- The port must be free: a second daemon on the same host with the same ``daemon.health_port``
  would otherwise fail half-way through its start-up.
- A non-loopback ``daemon.health_host`` exposes the HTTP server beyond this machine: refused unless an
  API token (``SIGIL_API_TOKEN``) guards its state-changing endpoints.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from sigil.errors import ConfigError

#: Names that always mean this machine.
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True when ``host`` is a loopback address or a name for it (``localhost``); "" and 0.0.0.0 are not."""
    if host.strip().lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def port_in_use(host: str, port: int) -> OSError | None:
    """The error binding ``host:port`` gives now (None: free). Bound the way the server binds (with
    SO_REUSEADDR), so a port left in TIME_WAIT by a previous run counts as free, a listening one not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return e
    return None


def check_http_address(host: str, port: int | None, token: str | None) -> None:
    """ConfigError naming the setting when the daemon's HTTP server could not, or should not, listen on
    ``host:port`` (``port`` None: the server is off; 0: any free port)."""
    if port is None:
        return
    if not is_loopback(host) and token is None:
        raise ConfigError(
            f"daemon.health_host: {host!r} is not a loopback address; serving beyond this machine needs "
            "an API token in SIGIL_API_TOKEN (or set daemon.health_host to 127.0.0.1)"
        )
    if port == 0:
        return
    error = port_in_use(host, port)
    if error is None:
        return
    if error.errno == errno.EADDRINUSE:
        raise ConfigError(
            f"health port {port} on {host} is in use (another daemon on this host?): choose another with "
            "--health-port or daemon.health_port"
        )
    raise ConfigError(
        f"daemon.health_host/daemon.health_port: cannot listen on {host}:{port}: {error.strerror or error}"
    )
