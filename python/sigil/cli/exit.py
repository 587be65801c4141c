"""``sigil exit``: see :mod:`sigil.cli.control`, where the three operator's controls live."""

from sigil.cli.control import parser

#: Registers ``exit``.
add_parser = parser("exit")
