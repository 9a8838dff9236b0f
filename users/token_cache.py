"""A driver's API token, remembered in Redis for hot paths that must not query the database.

The position fast path (locations/fast_path.py) reads `ridehail:token:<sha256 of the key>`
inside its one Lua script; anything not remembered there takes the ordinary way through
Django and DRF, which remembers it. Only tokens of active drivers are kept, hashed (a copy of
the Redis data gives no usable token), for a few minutes; signing out, deleting a token,
deactivating a user or changing their role forgets them at once, in every process.
"""

import hashlib
import logging
import uuid
from typing import Any

import redis
from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from ridehail import throttling
from ridehail.events.connection import quick_redis, shared_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "ridehail:token"
REMEMBER_SECONDS = 300


def token_cache_key(token_key: str) -> str:
    return f"{KEY_PREFIX}:{hashlib.sha256(token_key.encode()).hexdigest()}"


def remember_driver_token(token_key: str, driver_id: uuid.UUID) -> None:
    """Remember it for the fast paths; a nicety, so it costs a slow Redis at most REDIS_TIMEOUT once.

    While the rate limits count in memory because Redis just failed (ridehail/throttling.py), it
    is not even tried: the request has already waited for Redis once.
    """
    if throttling.outage.skip_redis():
        return
    client = quick_redis(settings.REDIS_URL, timeout=throttling.REDIS_TIMEOUT)
    try:
        client.set(token_cache_key(token_key), str(driver_id), ex=REMEMBER_SECONDS)
    except redis.RedisError as exc:  # the hot path falls back to the database: slower, still right
        throttling.outage.failed("token cache", exc)
        logger.warning("could not remember a driver token: %s", exc)


def forget_tokens(token_keys: list[str]) -> None:
    """Forget these tokens in Redis; if Redis cannot be told, they expire by themselves."""
    if not token_keys:
        return
    try:
        shared_redis().delete(*[token_cache_key(key) for key in token_keys])
    except redis.RedisError as exc:
        logger.warning(
            "could not forget %d token(s) (they expire within %ds): %s", len(token_keys), REMEMBER_SECONDS, exc
        )


def forget_tokens_of(user_id: uuid.UUID) -> None:
    forget_tokens(list(Token.objects.filter(user_id=user_id).values_list("key", flat=True)))


# Every way a token stops being a valid driver's token forgets it at once: the token deleted
# (sign-out, the admin), the user deactivated, their role changed or the user deleted. A save
# that names its fields (a status change, a login) cannot do that and costs nothing here.
ACCESS_FIELDS = {"is_active", "role"}


@receiver(post_delete, sender=Token, dispatch_uid="token-cache-forget-deleted-token")
def _forget_deleted_token(sender: Any, instance: Token, **kwargs: Any) -> None:
    forget_tokens([instance.key])


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="token-cache-forget-on-access-change")
def _forget_tokens_on_access_change(
    sender: Any, instance: Any, created: bool, update_fields: frozenset[str] | None, **kwargs: Any
) -> None:
    if created or (update_fields is not None and not ACCESS_FIELDS & set(update_fields)):
        return
    if not (instance.is_active and instance.is_driver):
        forget_tokens_of(instance.pk)
