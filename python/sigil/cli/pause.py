"""``sigil pause``: see :mod:`sigil.cli.control`, where the three operator's controls live."""

from sigil.cli.control import parser

#: Registers ``pause``.
add_parser = parser("pause")
