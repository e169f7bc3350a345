"""vwell-pbx-srv: one JSON API (HTTP GET, HTTP POST, WebSocket) in front of an Asterisk PBX.

Layers, innermost first (an inner layer never imports an outer one):
``protocol`` (sans-IO AMI codec) -> ``ami`` (asyncio client) -> ``pbx`` (operations)
-> ``events`` (subscriptions and fan-out) -> ``api`` (envelope, auth, methods)
-> ``web`` (aiohttp routes). ``config``, ``cli`` and ``simulator`` sit beside them.
"""

#: The one place the version is written: packaging (pyproject.toml reads it), the
#: ``--version`` of the command line, ``/health`` and ``/openapi.json`` all take it from
#: here. Every release gets a section in CHANGELOG.md under the same number.
__version__ = "0.1.0"
