"""Notifications to a person: what happened (:mod:`sigil.notify.events`), and sending it through
apprise without ever holding a pass up (:mod:`sigil.notify.sender`; the daily figures per variant in
:mod:`sigil.notify.summary`).

Importing this package loads no third-party module: the config names the events from here, and
apprise is imported only when a daemon with notification URLs starts.
"""
