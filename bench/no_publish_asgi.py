"""The project with publishing switched off, for bench/put_status.py only: the change commits,
nothing is written to the outbox and nothing reaches Redis. The cost of publishing is the
difference."""

from ridehail.asgi import application  # noqa: F401  (sets Django up)
from users import services

services.publish_on_commit = lambda event: None
