"""The dashboard websocket: staff only; a snapshot first, then every event (each once), position
frames and the workers' health."""

import asyncio
import json
import logging
from collections import deque

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from ridehail.dashboard.access import process_access_watcher
from ridehail.dashboard.control import process_control_listener, session_group, user_group
from ridehail.dashboard.fanout import Delivery, FanoutUnavailable, process_fanout
from ridehail.dashboard.session_sockets import session_sockets
from ridehail.dashboard.snapshot import build_snapshot, snapshot_versions
from users.permissions import is_operator

logger = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008  # fell behind; reconnect for a fresh snapshot
CLOSE_RESYNC = 4009  # events may have been missed (Redis reconnect); reconnect for a fresh snapshot
CLOSE_UNAVAILABLE = 4503  # live updates cannot be guaranteed right now; retry later
CLOSE_REVOKED = 4403  # signed out, or no longer active staff


class DashboardConsumer(AsyncWebsocketConsumer):
    # No channel layer per socket: events come through the process-wide fan-out (one Redis
    # subscription per process), control messages through the process's control listener.
    channel_layer_alias = None

    async def connect(self) -> None:
        if not await session_sockets().admit(self):  # closed with 4429: too many open in this session
            return
        user = self.scope.get("user")
        if not is_operator(user):
            await self.close()  # before accept: the handshake is refused, no data sent
            return
        # A plain deque and a wake-up future: asyncio.Queue's bookkeeping showed up at
        # ~15% of the server's CPU when one event goes to a thousand sockets.
        self.pending: deque[Delivery] = deque()
        self.wake_up: asyncio.Future | None = None
        self.versions: dict[str, int] = {}
        self.forwarder: asyncio.Task | None = None
        self.closing = False
        self.user_id = user.pk
        self.session_key = self.scope["session"].session_key
        self.control_groups = [session_group(self.session_key), user_group(user.pk)]
        await self.accept()
        process_access_watcher().watch(self)
        try:
            await process_control_listener().watch(self)
        except Exception as exc:  # no channel layer: a sign-out could not reach this socket
            logger.warning("dashboard: refusing live updates: control channel unavailable: %s", exc)
            self.closing = True
            await self.close(code=CLOSE_UNAVAILABLE)
            return
        await self._start_live_updates()

    async def _start_live_updates(self) -> None:
        # Listen first, then take the snapshot: an event committed in between is queued,
        # and the version check below drops it if the snapshot already contains it.
        try:
            await process_fanout().join(self)
        except FanoutUnavailable as exc:
            logger.warning("dashboard: refusing live updates: %s", exc)
            self.closing = True
            await self.close(code=CLOSE_UNAVAILABLE)
            return
        snapshot = await database_sync_to_async(build_snapshot)()
        self.versions = snapshot_versions(snapshot)
        await self.send(text_data=json.dumps(snapshot, separators=(",", ":")))
        if health := process_fanout().latest_health:
            self.pending.appendleft(health)  # the workers' health without waiting for the next frame
        self.forwarder = asyncio.create_task(self._forward())

    def offer(self, delivery: Delivery) -> None:
        if self.closing:
            return
        if len(self.pending) >= settings.RIDEHAIL_DASHBOARD_QUEUE_LIMIT:
            # This browser is not keeping up: better a resync than an unbounded backlog.
            logger.warning("dashboard: a connection fell %d events behind; closing it", len(self.pending))
            self._close_soon(CLOSE_TOO_SLOW)
            return
        self.pending.append(delivery)
        if self.wake_up is not None and not self.wake_up.done():
            self.wake_up.set_result(None)

    def resync(self) -> None:
        self._close_soon(CLOSE_RESYNC)

    def revoke(self) -> None:
        self._close_soon(CLOSE_REVOKED)

    def _close_soon(self, code: int) -> None:
        # Called from the fan-out, which must never wait on one socket.
        if not self.closing:
            self.closing = True
            self.close_task = asyncio.create_task(self.close(code=code))

    async def _forward(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self.pending:
                delivery = self.pending.popleft()
                if delivery.version:  # an event: once, in order (positions and health frames are not versioned)
                    if delivery.version <= self.versions.get(delivery.key, 0):
                        continue  # already in the snapshot, or an older event arriving late
                    self.versions[delivery.key] = delivery.version
                # Straight to the server: the frame was encoded once for all sockets.
                await self.base_send(delivery.message)
            self.wake_up = loop.create_future()
            await self.wake_up

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The dashboard only listens: whatever a client sends is ignored."""

    async def disconnect(self, code: int) -> None:
        self.closing = True
        await session_sockets().release(self)
        if hasattr(self, "pending"):
            process_fanout().leave(self)
            process_access_watcher().forget(self)
            process_control_listener().forget(self)
        forwarder = getattr(self, "forwarder", None)  # unset if the socket closed before it was accepted
        if forwarder:
            forwarder.cancel()
