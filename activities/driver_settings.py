"""Saving what a driver changed with /settings, with its audit row, in one transaction."""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autodispatch.db import tenant_tx
from schemas.driver import DriverSettings
from schemas.settings import SaveSettingsInput


class SettingsActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="save_driver_settings")
    async def save_driver_settings(self, req: SaveSettingsInput) -> DriverSettings:
        """Merge the changes into the driver's settings ("time_zone" goes to its column). The audit row
        is unique per (workflow, step): a retried attempt neither writes it twice nor changes more."""
        changes: dict[str, Any] = dict(req.changes)
        time_zone = changes.pop("time_zone", None)
        async with tenant_tx(self.pool, req.tenant_id) as conn:
            row = await conn.fetchrow(
                "SELECT settings, time_zone FROM drivers WHERE tenant_id = $1 AND chat_id = $2 FOR UPDATE",
                req.tenant_id, req.chat_id,
            )  # fmt: skip
            if row is None:
                raise ApplicationError(
                    f"no driver {req.chat_id} in tenant {req.tenant_id}",
                    type="DriverGone",
                    non_retryable=True,
                )
            before = DriverSettings.model_validate(row["settings"] or {})
            # Validated as a whole: a change the model rejects never reaches the row.
            after = DriverSettings.model_validate({**before.model_dump(), **changes})
            await conn.execute(
                """UPDATE drivers SET settings = $3, time_zone = COALESCE($4, time_zone), updated_at = now()
                    WHERE tenant_id = $1 AND chat_id = $2""",
                req.tenant_id, req.chat_id, after.model_dump(), time_zone,
            )  # fmt: skip
            previous = {k: before.model_dump()[k] for k in changes}
            if time_zone is not None:
                previous["time_zone"] = row["time_zone"]
            # No conflict target: it would need the audit log to be readable (only the system reads it).
            await conn.execute(
                """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, details)
                   VALUES ($1, $2, $3, 'settings_changed', $4, $5) ON CONFLICT DO NOTHING""",
                req.tenant_id, req.workflow_id, req.step, req.chat_id,
                {"changes": req.changes, "before": previous},
            )  # fmt: skip
        return after
