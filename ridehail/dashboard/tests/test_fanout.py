"""The fan-out in-process, on real Redis: whatever one message does, the loop goes on or its
sockets are told to resync; it never dies silently."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from ridehail.dashboard import fanout as fanout_module
from ridehail.dashboard.fanout import Delivery, Fanout
from users.events import DRIVER_STATUS, DriverStatusChanged
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """A listener as the consumer is one: it takes deliveries and can be told to resync."""

    def __init__(self) -> None:
        self.versions: list[int] = []
        self.resynced = asyncio.Event()
        self.got = asyncio.Event()

    def offer(self, delivery: Delivery) -> None:
        if delivery.version:  # events only: health and positions frames come on their own schedule
            self.versions.append(delivery.version)
            self.got.set()

    def resync(self) -> None:
        self.resynced.set()


def publish(client, driver, version: int) -> None:
    event = DriverStatusChanged(driver.id, version % 2 == 1, datetime.now(UTC), uuid.uuid4(), version)
    client.publish(DRIVER_STATUS.channel, event.to_json())


def test_a_message_that_breaks_the_code_is_logged_and_the_next_ones_flow(redis_client, driver, monkeypatch, caplog):
    real_delivery = Fanout._delivery

    def breaks_on_version_2(event, extra):
        if event.version == 2:
            raise RuntimeError("a bug in building one frame")
        return real_delivery(event, extra)

    monkeypatch.setattr(Fanout, "_delivery", staticmethod(breaks_on_version_2))

    async def scenario() -> list[int]:
        fanout, recorder = Fanout(asyncio.get_running_loop()), Recorder()
        await fanout.join(recorder)
        for version in (1, 2, 3):
            publish(redis_client, driver, version)
        while recorder.versions[-1:] != [3]:
            recorder.got.clear()
            await asyncio.wait_for(recorder.got.wait(), 5)
        return recorder.versions

    User.objects.filter(pk=driver.pk).update(status_version=3)  # the fan-out shows what the database has reached
    assert asyncio.run(scenario()) == [1, 3]
    assert "a bug in building one frame" in caplog.text


def test_a_fan_out_that_cannot_go_on_tells_its_sockets_to_resync(redis_client, driver, monkeypatch, caplog):
    def broken_prepare(self, batch):
        raise RuntimeError("the fan-out itself is broken")

    async def scenario() -> bool:
        fanout, recorder = Fanout(asyncio.get_running_loop()), Recorder()
        await fanout.join(recorder)
        monkeypatch.setattr(fanout_module.Fanout, "prepare", broken_prepare)
        publish(redis_client, driver, 1)
        await asyncio.wait_for(recorder.resynced.wait(), 5)
        return recorder not in fanout.listeners

    assert asyncio.run(scenario())
    assert "the fan-out itself is broken" in caplog.text
