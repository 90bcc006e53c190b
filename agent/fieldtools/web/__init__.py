"""The technician's web page (issue 15): an aiohttp application on ``http.listen``.

- :mod:`.auth`: the admin password (scrypt hash file), sessions, CSRF tokens, login limits;
- :mod:`.survey`: live aggregates of the tap for the site survey (about twice a second);
- :mod:`.configedit`: check / apply with backup and automatic rollback;
- :mod:`.bundle`: the support bundle and secret redaction;
- :mod:`.app`: routes, /metrics and /health, the static page.
"""
