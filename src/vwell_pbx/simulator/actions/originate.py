"""Originate, sync and async, as the recorded Asterisk 20 answers it.

Async: ``Originate successfully queued`` at once; the outcome comes later as
``OriginateResponse`` (or 1.4's ``OriginateSuccess``/``OriginateFailure``, see the
simulator's ``legacy_originate_events``). Sync: the answer waits until the call is
answered (``Success``) or failed (``Originate failed``), and the events that happened
meanwhile reach this client after it. The call flows are in ``simulator.originator``.
"""

from __future__ import annotations

import asyncio
from typing import Final

from vwell_pbx.protocol import Message
from vwell_pbx.simulator.actions.base import ActionSession, response
from vwell_pbx.simulator.model import parse_callerid
from vwell_pbx.simulator.originator import OriginateOutcome, OriginateRequest

SYNC_ORIGINATE_SLACK: Final = 5.0
"""Seconds beyond the action's ``Timeout`` that a sync Originate waits for its outcome."""

_TRUE: Final = frozenset({"true", "yes", "1", "on"})


async def originate(session: ActionSession, action: Message, action_id: str | None) -> None:
    """Start a call from ``Channel`` to ``Context``/``Exten`` (or an ``Application``)."""
    engine = session.sim.engine
    channel = action.get("Channel")
    if not channel:
        session.send(response("Error", action_id, ("Message", "Channel not specified")))
        return
    try:
        priority = int(action.get("Priority") or 1)
    except ValueError:
        session.send(response("Error", action_id, ("Message", "Invalid priority")))
        return
    try:
        timeout = int(action.get("Timeout") or 30000) / 1000.0
    except ValueError:
        session.send(response("Error", action_id, ("Message", "Invalid timeout")))
        return
    application = action.get("Application") or None
    context = action.get("Context") or "default"
    exten = action.get("Exten") or "s"
    if application is None and not engine.context_exists(context):
        session.send(response("Error", action_id, ("Message", "Extension does not exist.")))
        return
    cid_num, cid_name = parse_callerid(action.get("CallerID"))
    variables: list[tuple[str, str]] = []
    for raw in action.get_all("Variable"):
        for item in raw.split(","):
            key, sep, value = item.partition("=")
            if sep and key.strip():
                variables.append((key.strip(), value))
    is_async = (action.get("Async") or "").strip().lower() in _TRUE
    request = OriginateRequest(
        channel=channel,
        context=None if application else context,
        exten=None if application else exten,
        priority=priority,
        application=application,
        data=action.get("Data") or "",
        cid_num=cid_num,
        cid_name=cid_name,
        timeout=max(0.0, timeout),
        variables=variables,
        account=action.get("Account") or "",
        action_id=action_id,
        channel_id=action.get("ChannelId") or None,
        other_channel_id=action.get("OtherChannelId") or None,
        is_async=is_async,
    )
    if is_async:
        session.send(response("Success", action_id, ("Message", "Originate successfully queued")))
        session.sim.originator.originate(request, lambda outcome: None)
        return
    decided: asyncio.Future[OriginateOutcome] = asyncio.get_running_loop().create_future()

    def settle(outcome: OriginateOutcome) -> None:
        if not decided.done():
            decided.set_result(outcome)

    with session.holding_events():
        session.sim.originator.originate(request, settle)
        try:
            outcome = await asyncio.wait_for(
                decided, timeout + engine.no_answer_after + SYNC_ORIGINATE_SLACK
            )
        except TimeoutError:
            outcome = OriginateOutcome(False, 0)
        if outcome.success:
            session.send(
                response("Success", action_id, ("Message", "Originate successfully queued"))
            )
        else:
            session.send(response("Error", action_id, ("Message", "Originate failed")))
