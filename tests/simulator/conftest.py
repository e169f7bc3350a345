"""Fixtures: a fast simulator with fixed ids and a factory of raw AMI connections."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.ami_peer import Connect, RawAmi
from tests.support.simulator import fast_simulator
from vwell_pbx.simulator import PbxSimulator


@pytest.fixture
async def pbx() -> AsyncIterator[PbxSimulator]:
    """A fast simulator whose calls end quickly, with fixed ids."""
    async with fast_simulator(
        call_hold=0.2, no_answer_after=0.1, rng=random.Random(7), uniqueid_epoch=1795838923
    ) as sim:
        yield sim


@pytest.fixture
async def connect(pbx: PbxSimulator) -> AsyncIterator[Connect]:
    """Open raw connections to ``pbx`` (or to the simulator given); closed afterwards."""
    opened: list[RawAmi] = []

    async def factory(
        sim: PbxSimulator | None = None, *, login: bool = False, **kwargs: Any
    ) -> RawAmi:
        target = sim or pbx
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        client = RawAmi(reader, writer)
        opened.append(client)
        if login:
            response = await client.login(**kwargs)
            assert response.name == "Success", response
        return client

    yield factory
    for client in opened:
        client.close()
