"""Logging filters named in settings.LOGGING."""

import logging


class DropErrorsDjangoLogged(logging.Filter):
    """Drops the development server's access line for a 4xx or 5xx: django.request logged it already.

    daphne's `runserver` logs each request as "HTTP GET /x 404 [...]" with the details as a dict
    argument; Django's handler logs every response of 400 or more ("Not Found: /x") itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        details = record.args if isinstance(record.args, dict) else {}
        status = details.get("status")
        return not (isinstance(status, int) and status >= 400)
