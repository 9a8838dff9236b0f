"""Staff who are deactivated, or lose staff status, are disconnected within seconds.

A session stays valid after an admin revokes someone, so the socket must not outlive the
decision. One query per web process every few seconds checks every open dashboard, rather
than one query per socket.
"""

import asyncio
import logging
import uuid
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from users.selectors import active_staff_ids

logger = logging.getLogger(__name__)


class Watched(Protocol):
    user_id: uuid.UUID

    def revoke(self) -> None:
        """The user may no longer watch: close the socket."""


class AccessWatcher:
    def __init__(self) -> None:
        self.watched: set[Watched] = set()
        self._task: asyncio.Task | None = None

    def watch(self, socket: Watched) -> None:
        self.watched.add(socket)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dashboard-access-watcher")

    def forget(self, socket: Watched) -> None:
        self.watched.discard(socket)

    async def check(self) -> int:
        """Close every socket whose user may no longer watch; returns how many were closed."""
        sockets = list(self.watched)
        if not sockets:
            return 0
        allowed = await database_sync_to_async(active_staff_ids)({socket.user_id for socket in sockets})
        revoked = [socket for socket in sockets if socket.user_id not in allowed]
        for socket in revoked:
            self.forget(socket)
            socket.revoke()
        if revoked:
            logger.info("dashboard: closed %d socket(s) of users no longer active staff", len(revoked))
        return len(revoked)

    async def _run(self) -> None:
        while self.watched:
            await asyncio.sleep(settings.RIDEHAIL_DASHBOARD_ACCESS_CHECK_SECONDS)
            try:
                await self.check()
            except Exception:  # a database hiccup must not stop the watching for good
                logger.exception("dashboard: access check failed; trying again")


_watchers: dict[asyncio.AbstractEventLoop, AccessWatcher] = {}


def process_access_watcher() -> AccessWatcher:
    loop = asyncio.get_running_loop()
    if loop not in _watchers:
        _watchers[loop] = AccessWatcher()
    return _watchers[loop]
