from django.apps import AppConfig


class EventsConfig(AppConfig):
    """The event machinery: its outbox table and its commands (run_subscriber, events)."""

    name = "ridehail.events"
    label = "events"
