"""The dashboard websocket: staff only; a snapshot first, then every event, each once."""

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from ridehail.events.event import DriverStatusChanged
from ridehail.events.fanout import FanoutUnavailable, process_fanout
from users.selectors import dashboard_drivers

logger = logging.getLogger(__name__)

# A browser this many events behind is not keeping up: close it and let it resync,
# rather than let its backlog grow without bound.
QUEUE_LIMIT = settings.RIDEHAIL_DASHBOARD_QUEUE_LIMIT
CLOSE_TOO_SLOW = 4008  # fell behind; reconnect for a fresh snapshot
CLOSE_RESYNC = 4009  # events may have been missed (Redis reconnect); reconnect for a fresh snapshot
CLOSE_UNAVAILABLE = 4503  # live updates cannot be guaranteed right now; retry later


class DashboardConsumer(AsyncWebsocketConsumer):
    # No channel layer: events come through the process-wide fan-out (one Redis
    # subscription per process), not through one channel-layer receive loop per socket.
    channel_layer_alias = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (user and user.is_authenticated and user.is_staff):
            await self.close()  # before accept: the handshake is refused, no data sent
            return
        self.queue: asyncio.Queue[tuple[DriverStatusChanged, str]] = asyncio.Queue(QUEUE_LIMIT)
        self.versions: dict[str, int] = {}
        self.forwarder: asyncio.Task | None = None
        self.closing = False
        await self.accept()
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
        drivers = await database_sync_to_async(dashboard_drivers)()
        self.versions = {driver["driverId"]: driver["version"] for driver in drivers}
        await self.send(text_data=json.dumps({"type": "snapshot", "drivers": drivers}))
        self.forwarder = asyncio.create_task(self._forward())

    def offer(self, event: DriverStatusChanged, frame: str) -> None:
        if self.closing:
            return
        try:
            self.queue.put_nowait((event, frame))
        except asyncio.QueueFull:
            logger.warning("dashboard: a connection fell %d events behind; closing it", QUEUE_LIMIT)
            self._close_soon(CLOSE_TOO_SLOW)

    def resync(self) -> None:
        self._close_soon(CLOSE_RESYNC)

    def _close_soon(self, code: int) -> None:
        # Called from the fan-out, which must never wait on one socket.
        if not self.closing:
            self.closing = True
            self.close_task = asyncio.create_task(self.close(code=code))

    async def _forward(self) -> None:
        while True:
            event, frame = await self.queue.get()
            driver_id = str(event.driver_id)
            if event.version <= self.versions.get(driver_id, 0):
                continue  # already in the snapshot, or an older event arriving late
            self.versions[driver_id] = event.version
            await self.send(text_data=frame)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The dashboard only listens: whatever a client sends is ignored."""

    async def disconnect(self, code: int) -> None:
        self.closing = True
        if hasattr(self, "queue"):
            process_fanout().leave(self)
        if getattr(self, "forwarder", None):
            self.forwarder.cancel()
