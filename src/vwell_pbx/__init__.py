"""vwell-pbx-srv: one JSON API (HTTP GET, HTTP POST, WebSocket) in front of an Asterisk PBX.

Layers, innermost first (an inner layer never imports an outer one):
``protocol`` (sans-IO AMI codec) -> ``ami`` (asyncio client) -> ``pbx`` (operations)
-> ``events`` (subscriptions and fan-out) -> ``api`` (envelope, auth, methods)
-> ``web`` (aiohttp routes). ``config``, ``cli`` and ``simulator`` sit beside them.
"""

__version__ = "0.1.0"
