"""A miniature bk-monitor: a WSGI web app, two Celery workers and a RedBeat scheduler."""
