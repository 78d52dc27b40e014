"""Onboarding activities: which fleet a new driver joins, whether their calendar is usable (the phase 1
probe), and whitelisting them as `pending`."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.calendar import CalendarService
from activities.verification import CalendarAccess, verify_calendar_access
from autodispatch import texts
from autodispatch.admin import resolve_tenant
from autodispatch.db import SYSTEM_TENANT, system_tx
from schemas.onboarding import (
    CheckCalendarInput,
    OnboardingInput,
    OnboardingTenant,
    RegisterDriverInput,
    Registration,
    ResolveTenantInput,
    RouteMessageInput,
    RouteResult,
    TenantResolution,
    onboarding_workflow_id,
)
from workflows.ids import CHAT_ID

# By name: the workflow module imports this one.
ONBOARDING_WORKFLOW = "OnboardingWorkflow"
ONBOARDING_SIGNAL = "onboarding_message"


def _tenant(row: asyncpg.Record) -> OnboardingTenant:
    return OnboardingTenant(
        tenant_id=row["tenant_id"],
        name=row["name"],
        activation=row["onboarding_activation"],
        time_zone=row["time_zone"],
    )


def _zone(name: str | None) -> str | None:
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


class OnboardingRouter:
    """Hands an unknown chat's message to that chat's one OnboardingWorkflow, through the Temporal client
    (workflows cannot signal-with-start). None given: the client of the worker running the activity."""

    def __init__(self, client: Client | None = None) -> None:
        self.client = client

    @activity.defn(name="onboarding_route_message")
    async def route_message(self, req: RouteMessageInput) -> RouteResult:
        client = self.client or activity.client()
        update = req.update
        workflow_id = onboarding_workflow_id(update.bot_id, update.chat_id)
        try:
            await client.get_workflow_handle(workflow_id).signal(ONBOARDING_SIGNAL, update)
            return RouteResult(outcome="onboarding_continued")
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:  # not running (never started, or ended): fine
                raise
        if not req.start:
            return RouteResult()
        # Signal-with-start: atomic against a second /start racing this one (it signals, not starts).
        await client.start_workflow(
            ONBOARDING_WORKFLOW,
            OnboardingInput(
                bot_id=update.bot_id,
                chat_id=update.chat_id,
                language=texts.language_for(update.language_code),
                sender_name=update.sender_name,
                reply_task_queue=update.reply_task_queue,
            ),
            id=workflow_id,
            task_queue=req.task_queue,
            start_signal=ONBOARDING_SIGNAL,
            start_signal_args=[update],
            # A dialogue that ended (gave up, cancelled) is started afresh by a new /start.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes([SearchAttributePair(CHAT_ID, str(update.chat_id))]),
        )
        return RouteResult(outcome="onboarding_started")


class OnboardingActivities:
    def __init__(
        self, pool: asyncpg.Pool, calendar: CalendarService, default_tenant: str | None = None
    ) -> None:
        self.pool = pool
        self.calendar = calendar
        # AUTODISPATCH_ONBOARDING_DEFAULT_TENANT: whom a bare /start joins (None: an invite is required).
        self.default_tenant = default_tenant

    @activity.defn(name="onboarding_resolve_tenant")
    async def resolve_tenant(self, req: ResolveTenantInput) -> TenantResolution:
        """The tenant an invite code names (or the bot's default tenant), and the e-mail to share with."""
        account = self.calendar.service_account_email
        async with system_tx(self.pool) as conn:
            own = await conn.fetchrow(
                "SELECT t.* FROM tenant_bots b JOIN tenants t USING (tenant_id) WHERE b.bot_id = $1",
                req.bot_id,
            )
            if own is not None:
                # A fleet's own bot: its fleet, with its code or none; another fleet's code is unknown here.
                known = req.code is None or req.code == own["invite_code"]
                row, problem = (own, "no_code") if known else (None, "unknown_code")
            elif req.code is not None:
                # Codes are random (16+ characters) and looked up across tenants, so in the system context.
                rows = await conn.fetch(
                    "SELECT * FROM tenants WHERE invite_code = $1 AND tenant_id <> $2 LIMIT 2",
                    req.code, SYSTEM_TENANT,
                )  # fmt: skip
                # Two tenants with one code cannot happen by chance; if it ever did, neither is guessed.
                row = rows[0] if len(rows) == 1 else None
                problem = "unknown_code"
            elif self.default_tenant:
                row = await resolve_tenant(conn, self.default_tenant)
                problem = "no_code"
            else:
                row, problem = None, "no_code"
        if row is None or row["tenant_id"] == SYSTEM_TENANT:
            return TenantResolution(problem=problem, service_account=account)  # type: ignore[arg-type]
        if row["status"] != "active":
            return TenantResolution(problem="tenant_disabled", service_account=account)
        return TenantResolution(tenant=_tenant(row), service_account=account)

    @activity.defn(name="onboarding_check_calendar")
    def check_calendar(self, req: CheckCalendarInput) -> CalendarAccess:
        """The phase 1 check, as the service account: the calendar's metadata only, since nobody has proved
        yet that the calendar is this driver's (no probe event is written into it). Synchronous
        (google-api-python-client): runs on the worker's thread pool. Never raises for what Google
        answers: the status says what is wrong, for the driver."""
        return verify_calendar_access(self.calendar, req.calendar_id, write_probe=False)

    @activity.defn(name="onboarding_register_driver")
    async def register_driver(self, req: RegisterDriverInput) -> Registration:
        """Whitelist the chat as `pending` and write its audit row, in one transaction. Idempotent: a retry
        finds its own row (same tenant and calendar) and reports it registered again."""
        async with system_tx(self.pool) as conn:
            existing = await conn.fetchrow(
                "SELECT tenant_id, calendar_id, status, time_zone, calendar_code FROM drivers WHERE chat_id = $1",
                req.chat_id,
            )
            tenant = await conn.fetchrow("SELECT * FROM tenants WHERE tenant_id = $1", req.tenant_id)
            activation = tenant["onboarding_activation"] if tenant is not None else None
            if existing is not None:
                mine = existing["tenant_id"] == req.tenant_id and existing["calendar_id"] == req.calendar_id
                return Registration(
                    outcome="registered" if mine else "already_registered", tenant_id=existing["tenant_id"],
                    status=existing["status"], activation=activation, time_zone=existing["time_zone"],
                    calendar_code=existing["calendar_code"] if mine else None,
                )  # fmt: skip
            if tenant is None or tenant["status"] != "active":
                return Registration(outcome="tenant_unavailable", tenant_id=req.tenant_id)
            zone = _zone(req.calendar_time_zone) or tenant["time_zone"]
            # Shared with us is not owned by them: the row gets a one-time code for the calendar's
            # description (the trigger of migration 0011_a), and the calendar stays unused until then.
            code = await conn.fetchval(
                """INSERT INTO drivers (tenant_id, chat_id, driver_name, calendar_id, time_zone, status)
                   VALUES ($1, $2, $3, $4, $5, 'pending') RETURNING calendar_code""",
                req.tenant_id, req.chat_id, req.driver_name, req.calendar_id, zone,
            )  # fmt: skip
            await conn.execute(
                """INSERT INTO audit_log (tenant_id, workflow_id, step, action, chat_id, details)
                   VALUES ($1, $2, $3, 'driver_registered', $4, $5) ON CONFLICT DO NOTHING""",
                req.tenant_id, req.workflow_id, req.step, req.chat_id,
                {"calendar_id": req.calendar_id, "name": req.driver_name, "status": "pending",
                 "time_zone": zone, "activation": activation, "access_role": req.access_role,
                 "calendar_proof": "awaiting_code"},
            )  # fmt: skip
        return Registration(
            outcome="registered",
            tenant_id=req.tenant_id,
            status="pending",
            activation=activation,
            time_zone=zone,
            calendar_code=code,
        )
