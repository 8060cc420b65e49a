"""The projector: reads ``asset-events`` and keeps the asset-state projection the alerts read.

Records are applied in batches, in partition order, one transaction per batch; a record's offset is stored
once its batch is committed. Applying an event twice changes nothing (each state remembers the last position
it applied), so a redelivery or a rebuild from the start gives the same state.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from sqlalchemy import Engine

from assethooks.alerts import FieldNames
from assethooks.clock import Clock, utc_now
from assethooks.completion import Done
from assethooks.errors import InvalidEventError
from assethooks.kafka import Record, coordinates, record_key
from assethooks.store.assets import ProjectedItem, project
from assethooks.store.db import write_through_outage
from schemas.events import parse_event


class Projector:
    """Applies asset events to the projection (a ``consumers.runtime.Handler``)."""

    def __init__(
        self, engine: Engine, fields: FieldNames, *, interval: float = 0.05, clock: Clock = utc_now
    ) -> None:
        self._engine = engine
        self._fields = fields
        self._interval = interval
        self._clock = clock
        self._pending: list[tuple[ProjectedItem | None, Done]] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="projection")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start writing batches."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="projection")

    async def close(self) -> None:
        """Stop (what is pending stays uncommitted and is read again next time)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        """Nothing to prepare: applying an event twice changes nothing."""

    def schedule(self, record: Record, done: Done) -> None:
        """Queue one record; ``done`` is called when its batch is committed."""
        item: ProjectedItem | None = None
        try:
            event = parse_event(record.value())
            asset_id = record_key(record) or event.asset_key
            if asset_id:
                _topic, partition, offset = coordinates(record)
                item = (asset_id, event, (partition, offset))
        except InvalidEventError:
            pass  # the dispatcher dead-letters invalid records; nothing to project
        self._pending.append((item, done))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._interval)
            batch, self._pending = self._pending, []
            items = [item for item, _ in batch if item is not None]
            try:
                await write_through_outage(partial(self._apply, items), "projection")
            except Exception as exc:  # a bug: these records must not be committed
                for _, done in batch:
                    done(exc)
                continue
            for _, done in batch:
                done(None)

    async def _apply(self, items: list[ProjectedItem]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, project, self._engine, items, self._fields, self._clock())
