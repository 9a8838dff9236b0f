"""Django set up against a throwaway database, for benchmarks that run project code in-process."""

import os


def setup_django(database_url: str, redis_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ridehail.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def quiet_worker_logs(*names: str) -> None:
    """Workers log one line per event; in a benchmark those lines go to /dev/null, formatted as usual."""
    import logging

    from ridehail.events.runner import lean_log_records

    handler = logging.StreamHandler(open(os.devnull, "w"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = [handler], False
    lean_log_records()  # as run_subscriber does


def make_drivers(count: int) -> list:
    import uuid

    from users.models import Role, User

    prefix = uuid.uuid4().hex[:8]
    drivers = [User(username=f"bench-{prefix}-{n}", role=Role.DRIVER, password="!") for n in range(count)]
    return User.objects.bulk_create(drivers)
