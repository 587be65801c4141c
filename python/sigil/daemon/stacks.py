"""``kill -USR1 <daemon pid>``: where a daemon that will not stop is waiting, and the daemon goes on.

Two views, one signal. faulthandler prints every thread's stack from C, so it answers even when the
main thread is stuck inside a call; while the event loop runs, each asyncio task's stack follows,
which names the ``await`` a stop is waiting on when the loop itself sits idle (a thread dump then only
shows ``select``).
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: The signal that asks for the stacks.
DUMP_SIGNAL = signal.SIGUSR1


def dump_threads_on_signal() -> None:
    """Every thread's stack on stderr at :data:`DUMP_SIGNAL` (also before and after the event loop)."""
    faulthandler.register(DUMP_SIGNAL, all_threads=True)


def dump_tasks() -> None:
    """Every asyncio task's stack on stderr (called on the loop's thread)."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


async def with_stack_dumps(main: Coroutine[Any, Any, T]) -> T:
    """Runs ``main`` with :data:`DUMP_SIGNAL` printing the threads' and the tasks' stacks."""
    loop = asyncio.get_running_loop()
    # faulthandler only installs its handler when the signal is not registered with it already, so
    # each change of the signal's handler goes through unregister first.
    faulthandler.unregister(DUMP_SIGNAL)
    loop.add_signal_handler(DUMP_SIGNAL, dump_tasks)
    # Chained to the loop's handler: the threads first, from C, then the loop wakes for the tasks.
    faulthandler.register(DUMP_SIGNAL, all_threads=True, chain=True)
    try:
        return await main
    finally:
        faulthandler.unregister(DUMP_SIGNAL)
        loop.remove_signal_handler(DUMP_SIGNAL)
        dump_threads_on_signal()
