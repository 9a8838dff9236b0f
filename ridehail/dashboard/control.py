"""Control messages to open dashboards, in every web process: sign-out, lost staff rights.

This is what the channel layer (channels-redis) is good at: a few messages to named groups.
Signing out sends `dashboard.close` to the session's group; a user who is no longer active
staff gets one to their user's group; every web process that has a socket of that session
or user closes it with 4403 within a second.

Like the fan-out, membership is per *process*, not per socket: each process has one channel
on the layer and joins a group once, however many of its sockets belong to that session or
user, so a thousand dashboards reconnecting at once are not thousands of group changes
(ANCHORS.md: that exhausted the layer's connection pool). Memberships are renewed before
the layer's `group_expiry` lets them lapse. Events never travel this way: see fanout.py.
"""

import asyncio
import hashlib
import logging
import uuid
from collections import defaultdict
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest

from ridehail.dashboard.per_loop import per_event_loop
from users.models import User
from users.permissions import is_operator

logger = logging.getLogger(__name__)

CLOSE = "dashboard.close"
RENEW_SECONDS = 3600.0  # well inside channels-redis's default group_expiry of a day


class Controlled(Protocol):
    control_groups: list[str]

    def revoke(self) -> None:
        """The session ended or the user may no longer watch: close the socket."""


def session_group(session_key: str) -> str:
    # Group names are limited in length and characters; a session key is a secret anyway.
    return f"dashboard-session.{hashlib.sha256(session_key.encode()).hexdigest()[:40]}"


def user_group(user_id: uuid.UUID | str) -> str:
    return f"dashboard-user.{uuid.UUID(str(user_id)).hex}"


def close_dashboards(group: str) -> None:
    """Tell every web process to close the dashboards of this group; never fails the caller."""
    layer = get_channel_layer()
    try:
        async_to_sync(layer.group_send)(group, {"type": CLOSE, "group": group})
    except Exception:  # Redis down: the access watcher's periodic check still closes them
        logger.warning("dashboard: could not send %s to %s", CLOSE, group, exc_info=True)


class ControlListener:
    """This process's one channel on the layer and the groups its sockets belong to."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.members: dict[str, set[Controlled]] = defaultdict(set)
        self.channel: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._leaving: set[asyncio.Task] = set()

    async def watch(self, socket: Controlled) -> None:
        """Join the socket's groups (once per process); raises if the layer cannot be reached."""
        if self.channel is None:
            self.channel = await self.layer.new_channel("dashboard-control.")
            self._tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._renew())]
        for group in socket.control_groups:
            if not self.members[group]:
                await self.layer.group_add(group, self.channel)
            self.members[group].add(socket)

    def forget(self, socket: Controlled) -> None:
        for group in socket.control_groups:
            self.members[group].discard(socket)
            if not self.members[group]:
                del self.members[group]
                task = asyncio.create_task(self._leave(group))
                self._leaving.add(task)  # a reference, so the task is not collected mid-way
                task.add_done_callback(self._leaving.discard)

    async def _leave(self, group: str) -> None:
        if group in self.members or self.channel is None:
            return  # a socket of the group came back meanwhile
        try:
            await self.layer.group_discard(group, self.channel)
        except Exception:  # the membership expires by itself; a stray message closes nothing
            logger.warning("dashboard: could not leave %s", group, exc_info=True)

    async def _receive(self) -> None:
        while True:
            try:
                message: dict[str, Any] = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("dashboard: control channel failed; retrying")
                await asyncio.sleep(1)
                continue
            if message.get("type") == CLOSE:
                sockets = list(self.members.get(message.get("group", ""), ()))
                for socket in sockets:
                    socket.revoke()
                if sockets:
                    logger.info("dashboard: closed %d socket(s) of %s", len(sockets), message["group"])

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            for group in list(self.members):
                try:
                    await self.layer.group_add(group, self.channel)
                except Exception:
                    logger.warning("dashboard: could not renew %s", group, exc_info=True)


process_control_listener = per_event_loop(lambda loop: ControlListener())


@receiver(user_logged_out, dispatch_uid="dashboard-close-on-logout")
def close_dashboards_of_the_session(sender: Any, request: HttpRequest | None, **kwargs: Any) -> None:
    # Sent before the session is flushed: its key still names the dashboards to close.
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        close_dashboards(session_group(session_key))


ACCESS_FIELDS = {"is_staff", "is_active"}


@receiver(post_save, sender=User, dispatch_uid="dashboard-close-on-lost-access")
def close_dashboards_of_a_user_who_lost_access(
    sender: Any, instance: User, created: bool, update_fields: frozenset[str] | None, **kwargs: Any
) -> None:
    # Only a save that can take access away: not a new user, not a status change or a login
    # (those name their fields, and it is the hot path).
    if created or (update_fields is not None and not ACCESS_FIELDS & set(update_fields)):
        return
    if not is_operator(instance):
        close_dashboards(user_group(instance.pk))


@receiver(post_delete, sender=User, dispatch_uid="dashboard-close-on-delete")
def close_dashboards_of_a_deleted_user(sender: Any, instance: User, **kwargs: Any) -> None:
    close_dashboards(user_group(instance.pk))
