"""The package's single exception root.

Every layer defines its own subclasses next to its code (``protocol.errors``,
``ami.errors``, ``api.errors``); the API layer maps them to ``errCode`` values in one
table (``api.errors.ERROR_CODES``). Messages never contain secrets.
"""


class VwellError(Exception):
    """Root of every exception this package raises on purpose."""
