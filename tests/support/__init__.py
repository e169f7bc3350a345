"""What the tests share, each thing once. Nothing here is a mock: every helper talks to
a real server, a real simulator or a real socket.

- ``api``: the test users' credentials (``AGENT``, ``ADMIN``, ``SUPERVISOR``), the test
  configuration (``make_config``, ``add_test_users``), and HTTP and WebSocket clients of
  the API (``ApiClient``, ``WsClient``);
- ``waiting``: ``until``, the one way a test waits for a condition;
- ``envelopes``: ``assert_envelope``, what every answer must look like;
- ``simulator``: the fast simulator options in one place (``FAST_SIMULATOR``,
  ``fast_simulator``), ``TimedSimulator`` and ``received``;
- ``ami_peer``: ``ScriptedPbx``, the one scripted AMI server (for a PBX misbehaving on
  purpose), and ``RawAmi``, a raw AMI client;
- ``transcripts``: the recorded Asterisk transcripts of tests/data/ami.

The most used names are importable from ``tests.support`` itself.
"""

# Everything api.py defines (credentials, configuration, clients, and what is added
# there later) is importable from tests.support, as the test modules have always done.
from tests.support.api import *  # noqa: F403
from tests.support.envelopes import assert_envelope
from tests.support.simulator import FAST_SIMULATOR, fast_simulator
from tests.support.waiting import until

__all__ = ["FAST_SIMULATOR", "assert_envelope", "fast_simulator", "until"]  # and api's names
