"""`GET /metrics`: Prometheus text for the whole deployment, whichever web process answers.

Every value is read at scrape time from where all processes agree (Redis and the database),
or from counters that every process adds to in Redis (ridehail/events/metrics.py, http.py
here). Nothing is kept in one process's memory for longer than a few seconds, so several
web processes and the workers report one set of numbers.
"""
