"""A simulated city for `python manage.py simulate`: drivers and riders as real HTTP clients.

Nothing here imports Django or an app: the simulator speaks to ridehail only through its public
API, like any other client would, so what it shows (and what breaks under it) is what a real
fleet would see.
"""
