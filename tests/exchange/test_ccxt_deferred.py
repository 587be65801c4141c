"""ccxt imported through :mod:`sigil.exchange.ccxt_deferred`: only the exchanges asked for are real
modules, and every exchange ccxt knows is still there when asked for (each in a fresh interpreter:
the test process may have imported ccxt whole already)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from sigil.exchange.ccxt_hooks import exchange_class
from sigil.errors import ConfigError

def real():
    return sorted(
        name for name, m in list(sys.modules.items())
        if name.startswith(("ccxt.async_support.", "ccxt.")) and not name.startswith("ccxt.abstract.")
        and name.rpartition(".")[2] in ccxt.exchanges and not getattr(m, "__sigil_stand_in__", False)
    )

ccxt = sys.modules["ccxt.async_support"]
out = {"before": real(), "known": len(ccxt.exchanges)}
binance = exchange_class("binance")
out["binance"] = [c.__module__ for c in binance.__mro__[1:3]]
from ccxt.async_support import binanceus
out["binanceus"] = [c.__module__ for c in binanceus.__mro__[:3]]
out["okx"] = ccxt.okx.__module__
try:
    exchange_class("nosuch")
except ConfigError as e:
    out["nosuch"] = str(e)
out["after"] = real()
print(json.dumps(out))
"""


def run() -> dict[str, object]:
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(r.stdout)
    return result


def test_only_the_exchanges_asked_for_are_imported_and_each_is_the_real_class() -> None:
    out = run()
    assert out["before"] == [] and isinstance(out["known"], int) and out["known"] > 100
    assert out["binance"] == ["ccxt.async_support.binance", "ccxt.async_support.base.exchange"]
    # An exchange built on another gets the real base class, not a stand-in.
    assert out["binanceus"] == [
        "ccxt.async_support.binanceus",
        "ccxt.async_support.binance",
        "ccxt.async_support.base.exchange",
    ]
    assert out["okx"] == "ccxt.async_support.okx"
    assert out["nosuch"] == "exchange.id: 'nosuch' is not an exchange ccxt knows"
    assert out["after"] == [
        "ccxt.async_support.binance",
        "ccxt.async_support.binanceus",
        "ccxt.async_support.okx",
    ]
