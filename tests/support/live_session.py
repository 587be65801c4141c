"""A live-mode session against a simulator, run as its own process by the key-hygiene test.

``python tests/support/live_session.py URL`` with SIGIL_API_KEY / SIGIL_API_SECRET in the environment:
builds the client and broker the way the daemon does, logs EVERYTHING at DEBUG (ccxt's request lines with
their headers included), prints every object a user or a monitor could see (repr, str, health), trades,
provokes exchange errors and prints their messages and tracebacks. The test greps all of it for the
key and the secret. Exit 2 with one line when the keys are missing, as the daemon does.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback

from sigil.config import load_config
from sigil.errors import SigilError
from sigil.exchange.broker import make_broker
from sigil.exchange.ccxt_client import ExchangeClient
from sigil.exchange.settings import resolve_exchange


async def session(url: str) -> None:
    config = load_config()
    settings = resolve_exchange(config.settings.exchange, url=url, live=True)
    print("settings:", settings, repr(settings.credentials), str(settings.credentials))
    async with ExchangeClient(settings) as client:
        broker = make_broker(client, config.variants)
        print("client:", client, "broker:", broker)
        name = config.variants[0].name
        last = await client.last_price("BTC/USDT")
        buy = await broker.open(name, "BTC/USDT", last)
        print("bought:", buy)
        sell = await broker.close(name, "BTC/USDT", buy.qty, last)
        print("sold:", sell)
        logging.getLogger("session").info("fills %r %r, stats %r", buy, sell, client.stats)
        for attempt in (
            lambda: client.call("order", "create_market_sell_order", "BTC/USDT", 1e6, retry=False),
            lambda: client.call("order", "create_market_buy_order_with_cost", "NOPE/USDT", 10.0, retry=False),
            lambda: client.call("my trades", "fetch_my_trades", "BTC/USDT", retry=False),  # a 404 here
        ):
            try:
                await attempt()
            except Exception as e:
                print("error:", e)
                traceback.print_exc()
                logging.getLogger("session").exception("failed")
        print("health:", client.health(), broker.health())
        print("last request headers seen by ccxt are not printed anywhere by Sigil")


def main() -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(session(sys.argv[1]))
    except SigilError as e:
        print(f"sigil: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
