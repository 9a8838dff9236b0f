"""Replaying dead letters while other replays run: each dead letter goes back to its stream once."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from ridehail.events.connection import worker_redis
from ridehail.events.status import replay_dead_letter, replay_dead_letters
from ridehail.events.topic import STREAM_FIELD
from users.events import DRIVER_STATUS

LETTERS = 500


def dead_letters(redis_client, count: int) -> list[bytes]:
    """`count` dead letters, one per stream entry, each with its own payload; returns the payloads."""
    payloads = [f'{{"n": {n}}}'.encode() for n in range(count)]
    pipe = redis_client.pipeline(transaction=False)
    for n, payload in enumerate(payloads):
        fields = {STREAM_FIELD: payload, "error": "failed", "group": "rides", "entry_id": f"1-{n}", "deliveries": 6}
        pipe.xadd(DRIVER_STATUS.dead_letters, fields)
    pipe.execute()
    return payloads


def on_the_stream(redis_client) -> Counter:
    return Counter(fields[STREAM_FIELD.encode()] for _, fields in redis_client.xrange(DRIVER_STATUS.stream))


def test_two_replays_at_once_put_each_dead_letter_back_once(redis_client):
    payloads = dead_letters(redis_client, LETTERS)
    start = threading.Barrier(2)

    def replay(_: int) -> int:
        client = worker_redis()
        start.wait(timeout=10)
        return replay_dead_letters(client, DRIVER_STATUS)

    with ThreadPoolExecutor(max_workers=2) as pool:
        replayed = sum(pool.map(replay, range(2)))

    assert on_the_stream(redis_client) == Counter(payloads)  # each exactly once
    assert replayed == LETTERS
    assert redis_client.xlen(DRIVER_STATUS.dead_letters) == 0


def test_the_admins_replay_and_the_commands_share_the_guard(redis_client):
    [payload] = dead_letters(redis_client, 1)
    [(letter_id, _)] = redis_client.xrange(DRIVER_STATUS.dead_letters)

    assert replay_dead_letter(redis_client, DRIVER_STATUS, letter_id.decode()) is True
    assert replay_dead_letters(redis_client, DRIVER_STATUS) == 0
    assert replay_dead_letter(redis_client, DRIVER_STATUS, letter_id.decode()) is False
    assert on_the_stream(redis_client) == Counter([payload])
