"""A simulated Asterisk / Yeastar PBX speaking AMI over TCP, for tests, demos and load.

Start one in a test like aiosmtpd's controller::

    async with PbxSimulator(call_hold=0.2) as pbx:
        ...  # connect to 127.0.0.1:pbx.port
        run = await pbx.scenario("ring_group", answer_by="268", ring=0.2, talk=0.3)
        await run.wait(timeout=5)

See :mod:`vwell_pbx.simulator.server` for the connections, the public API and the
bounds, :mod:`vwell_pbx.simulator.scenarios` for the scripted calls,
:mod:`vwell_pbx.simulator.actions` for what each AMI action does (one handler per
action), :mod:`vwell_pbx.simulator.calls` for the call steps and outcome rules and
:mod:`vwell_pbx.simulator.gsm` for the GSM CLI texts.
"""

from vwell_pbx.simulator.gsm import SentSms, SpanState
from vwell_pbx.simulator.model import DEFAULT_EXTENSIONS, Dialplan, ExtensionBehaviour
from vwell_pbx.simulator.originator import OriginateOutcome
from vwell_pbx.simulator.runs import CallRun
from vwell_pbx.simulator.scenarios import SCENARIOS, CallScenarios
from vwell_pbx.simulator.server import PbxSimulator

__all__ = [
    "DEFAULT_EXTENSIONS",
    "SCENARIOS",
    "CallRun",
    "CallScenarios",
    "Dialplan",
    "ExtensionBehaviour",
    "OriginateOutcome",
    "PbxSimulator",
    "SentSms",
    "SpanState",
]
