"""The API layer: envelope parsing, authentication, permissions and method dispatch.

It knows nothing about HTTP or WebSocket framing: the web layer hands it a decoded
envelope and a ``Session`` and gets back the response object to serialise.
"""
