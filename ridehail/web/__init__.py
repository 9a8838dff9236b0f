"""The web helpers every app's API builds on: error answers, JSON parsing, throttles, schema pieces.

A ground floor beside `ridehail/events/`: apps import from here, and nothing here imports an
app or the project's top floor (settings, urls, asgi, the dashboard).
"""
