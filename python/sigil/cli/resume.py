"""``sigil resume``: see :mod:`sigil.cli.control`, where the three operator's controls live."""

from sigil.cli.control import parser

#: Registers ``resume``.
add_parser = parser("resume")
