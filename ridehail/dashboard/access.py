"""The backstop behind the control messages (control.py): a periodic check in the database.

A control message closes a dashboard within a second, but it can be missed (Redis was down
when the admin saved, a bulk `update()` sent no signal). So every few seconds each web
process also checks, in two queries for all its sockets, that each socket's user is still
active staff and its session still exists.
"""

import asyncio
import logging
import uuid
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

from ridehail.dashboard.per_loop import per_event_loop
from users.selectors import active_staff_ids

logger = logging.getLogger(__name__)


class Watched(Protocol):
    user_id: uuid.UUID
    session_key: str

    def revoke(self) -> None:
        """The user may no longer watch: close the socket."""


def _still_valid(sockets: list[Watched]) -> tuple[set[uuid.UUID], set[str]]:
    users = active_staff_ids({socket.user_id for socket in sockets})
    keys = {socket.session_key for socket in sockets}
    sessions = Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
    return users, set(sessions.values_list("session_key", flat=True))


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
        allowed, sessions = await database_sync_to_async(_still_valid)(sockets)
        revoked = [s for s in sockets if s.user_id not in allowed or s.session_key not in sessions]
        for socket in revoked:
            self.forget(socket)
            socket.revoke()
        if revoked:
            logger.info("dashboard: closed %d socket(s) of users signed out or no longer staff", len(revoked))
        return len(revoked)

    async def _run(self) -> None:
        while self.watched:
            await asyncio.sleep(settings.RIDEHAIL_DASHBOARD_ACCESS_CHECK_SECONDS)
            try:
                await self.check()
            except Exception:  # a database hiccup must not stop the watching for good
                logger.exception("dashboard: access check failed; trying again")


process_access_watcher = per_event_loop(lambda loop: AccessWatcher())
