"""``sigil daemon``: scanner passes on a persistent schedule, a watchdog, heartbeats, health and metrics.

Modules: :mod:`~sigil.daemon.app` (lifecycle),
:mod:`~sigil.daemon.serve` (assembling the process), :mod:`~sigil.daemon.scheduler` (APScheduler and its
job store), :mod:`~sigil.daemon.watchdog`, :mod:`~sigil.daemon.scanner` (the passes),
:mod:`~sigil.daemon.health` (``/health``, ``/metrics``), :mod:`~sigil.daemon.metrics`,
:mod:`~sigil.daemon.systemd` (sd_notify), :mod:`~sigil.daemon.heartbeat` (the dead-man probe).
"""
