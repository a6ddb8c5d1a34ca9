"""Local stand-ins for the outside systems the console talks to.

Each stand-in is a small HTTP (or SMTP) server on loopback. Tests start them on port 0;
`python -m sandbox run` starts them all for the offline demo. Nothing here imports the console,
and the console never imports this package: it reaches a stand-in by URL, like the real service.
"""
