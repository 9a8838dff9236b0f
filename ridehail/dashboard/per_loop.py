"""One instance per event loop: what a web process shares between all of its sockets.

An ASGI server runs one event loop per process, so "per loop" is "per process" there; a
test that runs several loops one after the other gets a fresh instance for each, and an
instance goes away with its loop.
"""

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def per_event_loop(factory: Callable[[asyncio.AbstractEventLoop], T]) -> Callable[[], T]:
    instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def instance() -> T:
        loop = asyncio.get_running_loop()
        if loop not in instances:
            instances[loop] = factory(loop)
        return instances[loop]

    return instance
