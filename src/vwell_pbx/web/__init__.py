"""The web layer: aiohttp routes for /api (HTTP GET, POST, WebSocket), CORS, /health,
/metrics, and the server's start-up and shutdown."""
