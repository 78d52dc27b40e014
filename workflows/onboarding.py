"""Onboarding (#6 phase 2): the bot walks a new driver through sharing a Google Calendar.

One OnboardingWorkflow per chat (id `onboarding-<bot>-<chat>`). MainWorkflow starts it for `/start` from
a chat that is not on the whitelist (`route_to_onboarding`), and hands it every later message of that
chat as the signal `onboarding_message`; a second `/start` resumes the same dialogue. The dialogue:

1. which fleet: the invite code of the deep link `https://t.me/<bot>?start=<code>` (or the bot's default
   tenant, AUTODISPATCH_ONBOARDING_DEFAULT_TENANT, for a bare /start);
2. step-by-step instructions to share a calendar with the service account's e-mail ("make changes to
   events"), then the calendar id (the id, the e-mail, or a calendar URL);
3. the phase 1 probe; a failure is reported precisely (not found / read-only / Google failing) and the
   driver may send the id again;
4. on success the chat is whitelisted as `pending`, activated by the admin or by a payment (the tenant's
   `onboarding_activation`).

24 h of silence gets one nudge; 7 days end the dialogue politely. Every step is an audit row.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.onboarding import OnboardingActivities, OnboardingRouter
    from activities.verification import CalendarAccess
    from autodispatch import texts
    from autodispatch.db import SYSTEM_TENANT
    from autodispatch.onboarding_input import parse_calendar_reference, parse_invite_code, start_payload
    from schemas.audit import AuditEntry
    from schemas.onboarding import (
        CheckCalendarInput,
        OnboardingInput,
        OnboardingResult,
        RegisterDriverInput,
        Registration,
        ResolveTenantInput,
        RouteMessageInput,
        RouteResult,
        TenantResolution,
    )
    from schemas.telegram import SendReplyInput, TelegramUpdateReceived
    from workflows import policies, steps
    from workflows.ids import TENANT_ID

NUDGE_AFTER = timedelta(hours=24)
GIVE_UP_AFTER = timedelta(days=7)
# The probe makes a few Calendar calls; if the activity itself keeps failing (not Google's answers, which
# come back as a status), the driver is told to try again instead of waiting for a day.
CHECK_GIVE_UP = timedelta(minutes=5)
# Handing a message to the dialogue is one call to Temporal itself: transient, retried with backoff.
ROUTE_TIMEOUT = timedelta(seconds=10)
ROUTE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)
# Update ids remembered (across continue-as-new) to recognise a message handed over twice.
MAX_SEEN_UPDATES = 50

RouteOutcome = Literal["onboarding_started", "onboarding_continued"]


def is_start(update: TelegramUpdateReceived) -> bool:
    return update.kind == "command" and texts.command_name(update.text) == "/start"


async def route_to_onboarding(update: TelegramUpdateReceived) -> RouteOutcome | None:
    """Workflow code (MainWorkflow, for a chat not on the whitelist): hand the message to the chat's
    OnboardingWorkflow, starting it for `/start`. None: no dialogue runs and this is not a /start.

    Workflows cannot signal-with-start, so an activity does it with the Temporal client: one atomic
    call that signals the chat's running dialogue or starts it, whichever two /start race. (A child
    workflow would tie the dialogue's end to a parent long gone.) A retried call may deliver the same
    update twice; the dialogue handles each update id once."""
    routed: RouteResult = await workflow.execute_local_activity_method(
        OnboardingRouter.route_message,
        RouteMessageInput(update=update, start=is_start(update), task_queue=workflow.info().task_queue),
        start_to_close_timeout=ROUTE_TIMEOUT,
        retry_policy=ROUTE_RETRY,
    )
    return routed.outcome


@workflow.defn(name="OnboardingWorkflow")
class OnboardingWorkflow:
    def __init__(self) -> None:
        self._inbox: list[TelegramUpdateReceived] = []
        self._s = OnboardingInput(bot_id=0, chat_id=0)
        self._audit: list[AuditEntry] = []
        self._flushed = 0
        self._run = ""

    @workflow.signal(name="onboarding_message")
    def message(self, update: TelegramUpdateReceived) -> None:
        self._inbox.append(update)

    @workflow.query(name="onboarding_state")
    def state(self) -> OnboardingInput:
        return self._s

    @workflow.run
    async def run(self, state: OnboardingInput) -> OnboardingResult:
        self._s = state
        # Audit and outbox steps are unique per workflow id; a dialogue started again after an earlier
        # one ended (same id) must not collide with its steps. The first run id is stable across
        # continue-as-new and resets, so a replayed or reset step still writes and sends once.
        self._run = workflow.info().first_execution_run_id[:8]
        self._inbox = [*state.inbox, *self._inbox]
        state.inbox = []
        if state.last_heard is None:
            state.last_heard = workflow.now()
        if state.tenant is not None:
            workflow.upsert_search_attributes([TENANT_ID.value_set(state.tenant.tenant_id)])
        while True:
            if self._inbox:
                result = await self._handle(self._inbox.pop(0))
                await self._flush()
                if result is not None:
                    return result
                if workflow.info().is_continue_as_new_suggested():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    state.inbox = self._inbox
                    workflow.continue_as_new(state)
                continue
            result = await self._silence()
            if result is not None:
                return result

    # -- time --------------------------------------------------------------------------
    async def _silence(self) -> OnboardingResult | None:
        """Wait for the driver; one nudge after NUDGE_AFTER of silence, give up after GIVE_UP_AFTER."""
        s = self._s
        assert s.last_heard is not None
        deadline = s.last_heard + (GIVE_UP_AFTER if s.nudged else NUDGE_AFTER)
        wait = deadline - workflow.now()
        if wait > timedelta(0):
            try:
                await workflow.wait_condition(lambda: bool(self._inbox), timeout=wait)
                return None
            except TimeoutError:
                pass
        if self._inbox:
            return None
        # Whitelisted meanwhile another way (an admin's `driver add`): nothing left to remind them of.
        lookup = await steps.lookup_driver(s.chat_id, s.bot_id or None)
        if lookup.driver is not None:
            self._record("outcome", "onboarding_superseded", status=lookup.driver.status)
            await self._flush()
            return OnboardingResult(
                outcome="already_registered", tenant_id=lookup.driver.tenant_id, status=lookup.driver.status
            )
        lang = s.language
        if not s.nudged:
            s.nudged, s.nudges = True, s.nudges + 1
            step = f"nudge-{s.nudges}"
            key = "onb_nudge_calendar" if s.stage == "calendar" else "onb_nudge_invite"
            await self._reply(step, texts.t(lang, key, account=self._account()))
            self._record(
                step, "onboarding_nudged", stage=s.stage, silent_hours=NUDGE_AFTER.total_seconds() / 3600
            )
            await self._flush()
            return None
        await self._reply("gave-up", texts.t(lang, "onb_gave_up"))
        self._record("outcome", "onboarding_gave_up", outcome="expired", stage=s.stage)
        await self._flush()
        return OnboardingResult(outcome="gave_up", tenant_id=s.tenant.tenant_id if s.tenant else None)

    # -- one message -------------------------------------------------------------------
    async def _handle(self, update: TelegramUpdateReceived) -> OnboardingResult | None:
        s = self._s
        if update.update_id in s.seen_updates:
            return None  # handed over twice (a retried routing call): handled already
        s.seen_updates = [*s.seen_updates, update.update_id][-MAX_SEEN_UPDATES:]
        s.handled += 1
        n = s.handled
        s.last_heard, s.nudged = workflow.now(), False
        if update.language_code:
            s.language = texts.language_for(update.language_code)
        s.sender_name = update.sender_name or s.sender_name
        s.reply_task_queue = update.reply_task_queue or s.reply_task_queue
        lang = s.language
        self._record(
            f"m{n}:received", "onboarding_message", kind=update.kind, text=update.text[:4096],
            stage=s.stage, update_id=update.update_id,
        )  # fmt: skip
        text = update.text.strip()

        if is_start(update):
            return await self._on_start(n, update, start_payload(text))
        if update.kind != "text":
            # Another command, a sticker, a photo: say again what this step needs.
            return await self._say(n, update, self._prompt_text())
        if text.lower().strip(".!") in texts.CANCEL_WORDS:
            await self._say(n, update, texts.t(lang, "onb_cancelled"))
            self._record("outcome", "onboarding_cancelled", outcome="cancelled", stage=s.stage)
            return OnboardingResult(outcome="cancelled", tenant_id=s.tenant.tenant_id if s.tenant else None)
        if s.stage == "tenant":
            code = parse_invite_code(text)
            if code is None:
                return await self._say(n, update, self._prompt_text())
            return await self._choose_tenant(n, update, code)
        return await self._on_calendar(n, update, text)

    async def _on_start(
        self, n: int, update: TelegramUpdateReceived, code: str | None
    ) -> OnboardingResult | None:
        s = self._s
        if code is None and s.tenant is not None:
            # A second /start: the same dialogue, where it was.
            self._record(f"m{n}:resumed", "onboarding_resumed", stage=s.stage)
            return await self._say(n, update, self._instructions("onb_resumed"))
        return await self._choose_tenant(n, update, code)

    async def _choose_tenant(
        self, n: int, update: TelegramUpdateReceived, code: str | None
    ) -> OnboardingResult | None:
        s = self._s
        lang = s.language
        found: TenantResolution = await workflow.execute_activity_method(
            OnboardingActivities.resolve_tenant,
            ResolveTenantInput(code=code, bot_id=s.bot_id or None),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
        )
        s.service_account = found.service_account
        if found.tenant is None:
            # The code is the driver's own input: kept in the audit for the admin, shortened.
            self._record(
                f"m{n}:tenant", "invite_rejected", outcome="refused", problem=found.problem,
                code=(code or "")[:64],
            )  # fmt: skip
            if found.problem == "unknown_code":
                text = texts.t(lang, "onb_bad_code", code=(code or "")[:64])
            elif found.problem == "tenant_disabled":
                text = texts.t(lang, "onb_tenant_closed")
            else:
                text = texts.t(lang, "onb_need_invite", chat_id=s.chat_id)
            if s.tenant is not None:  # keep going with the fleet chosen before
                text += "\n\n" + texts.t(lang, "onb_still_with", tenant=s.tenant.name)
            return await self._say(n, update, text)
        switched = s.tenant is not None and s.tenant.tenant_id != found.tenant.tenant_id
        s.tenant, s.stage = found.tenant, "calendar"
        workflow.upsert_search_attributes([TENANT_ID.value_set(found.tenant.tenant_id)])
        self._record(
            f"m{n}:tenant", "tenant_chosen", via="invite_code" if code else "default_tenant",
            activation=found.tenant.activation, switched=switched,
        )  # fmt: skip
        return await self._say(n, update, self._instructions("onb_welcome"))

    async def _on_calendar(
        self, n: int, update: TelegramUpdateReceived, text: str
    ) -> OnboardingResult | None:
        s = self._s
        lang = s.language
        assert s.tenant is not None
        calendar_id = parse_calendar_reference(text)
        if calendar_id is None:
            self._record(f"m{n}:calendar", "calendar_id_unrecognised", outcome="refused")
            return await self._say(n, update, texts.t(lang, "onb_not_a_calendar"))
        try:
            access: CalendarAccess = await workflow.execute_activity_method(
                OnboardingActivities.check_calendar,
                CheckCalendarInput(calendar_id=calendar_id),
                start_to_close_timeout=policies.CALENDAR_TIMEOUT * 2,
                schedule_to_close_timeout=CHECK_GIVE_UP,
                retry_policy=policies.CALENDAR_RETRY,
                priority=Priority(fairness_key=s.tenant.tenant_id),
            )
        except ActivityError as err:
            kind, message = steps.error_type(err)
            self._record(
                f"m{n}:calendar", "calendar_check_failed", outcome="error", calendar_id=calendar_id,
                status="error", error=kind, message=message,
            )  # fmt: skip
            return await self._say(n, update, texts.t(lang, "onb_check_unavailable"))
        s.service_account = access.account or s.service_account
        if not access.ok:
            self._record(
                f"m{n}:calendar", "calendar_check_failed", outcome="refused", calendar_id=calendar_id,
                status=access.status, message=access.message, access_role=access.access_role,
            )  # fmt: skip
            return await self._say(n, update, self._check_failure(access))
        self._record(
            f"m{n}:calendar", "calendar_verified", calendar_id=calendar_id, access_role=access.access_role,
            leftover_event_id=access.leftover_event_id,
        )  # fmt: skip
        await self._flush()  # the verified check is on record before the whitelist changes
        name = (s.sender_name or "").strip()[:200] or f"Telegram {s.chat_id}"
        reg: Registration = await workflow.execute_activity_method(
            OnboardingActivities.register_driver,
            RegisterDriverInput(
                tenant_id=s.tenant.tenant_id,
                chat_id=s.chat_id,
                driver_name=name,
                calendar_id=calendar_id,
                calendar_time_zone=access.time_zone,
                workflow_id=workflow.info().workflow_id,
                step=self._step(f"m{n}:registered"),
                access_role=access.access_role,
            ),  # fmt: skip
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
        )
        if reg.outcome == "tenant_unavailable":
            self._record(
                f"m{n}:registered", "registration_refused", outcome="refused", reason="tenant_disabled"
            )
            return await self._say(n, update, texts.t(lang, "onb_tenant_closed"))
        if reg.outcome == "already_registered":
            self._record("outcome", "onboarding_already_registered", status=reg.status)
            await self._say(n, update, texts.t(lang, "onb_already_registered"))
            return OnboardingResult(
                outcome="already_registered",
                tenant_id=reg.tenant_id,
                calendar_id=calendar_id,
                status=reg.status,
            )
        key = "onb_done_payment" if reg.activation == "payment" else "onb_done_approval"
        if reg.status == "active":
            key = "onb_done_active"  # approved already (a retry after the admin was quicker)
        done = texts.t(lang, key, calendar_id=calendar_id, tenant=s.tenant.name)
        if reg.calendar_code:  # sharing made it reachable; only its owner can make it theirs
            done += "\n\n" + texts.t(lang, "calendar_prove_after", code=reg.calendar_code)
        await self._say(n, update, done)
        self._record("outcome", "onboarding_registered", status=reg.status, activation=reg.activation)
        return OnboardingResult(
            outcome="registered", tenant_id=s.tenant.tenant_id, calendar_id=calendar_id, status=reg.status
        )

    # -- texts -------------------------------------------------------------------------
    def _account(self) -> str:
        return self._s.service_account or texts.t(self._s.language, "onb_bot_account")

    def _instructions(self, intro: str) -> str:
        s = self._s
        assert s.tenant is not None
        lang = s.language
        return texts.fit_telegram(
            texts.t(lang, intro, tenant=s.tenant.name)
            + "\n\n"
            + texts.t(lang, "onb_instructions", account=self._account())
        )

    def _prompt_text(self) -> str:
        s = self._s
        if s.stage == "calendar":
            return texts.t(s.language, "onb_send_calendar", account=self._account())
        return texts.t(s.language, "onb_need_invite", chat_id=s.chat_id)

    def _check_failure(self, access: CalendarAccess) -> str:
        lang = self._s.language
        key = {
            "not_found_or_not_shared": "onb_not_shared",
            "read_only": "onb_read_only",
            "unavailable": "onb_check_unavailable",
            "unreachable": "onb_check_unavailable",
        }.get(access.status, "onb_check_failed")
        return texts.t(
            lang, key, calendar_id=access.calendar_id, account=self._account(),
            role=access.access_role or "?", reason=access.status,
        )  # fmt: skip

    # -- effects -----------------------------------------------------------------------
    @property
    def _tenant_id(self) -> str:
        return self._s.tenant.tenant_id if self._s.tenant else SYSTEM_TENANT

    def _step(self, name: str) -> str:
        return f"{self._run}:{name}"

    def _record(self, step: str, action: str, outcome: str = "ok", **details: Any) -> None:
        self._audit.append(
            AuditEntry(
                tenant_id=self._tenant_id,
                workflow_id=workflow.info().workflow_id,
                step=self._step(step),
                action=action,
                chat_id=self._s.chat_id,
                outcome=outcome,
                details=details,
            )  # fmt: skip
        )

    async def _flush(self) -> None:
        rows = self._audit[self._flushed :]
        if not rows:
            return
        self._flushed = len(self._audit)
        await steps.write_audit(rows)

    async def _say(self, n: int, update: TelegramUpdateReceived, text: str) -> None:
        """The one reply to message n."""
        await self._reply(f"m{n}:reply", text, reply_to=update.message_id)

    async def _reply(self, step: str, text: str, reply_to: int | None = None) -> None:
        s = self._s
        try:
            sent = await steps.send_reply(
                SendReplyInput(
                    tenant_id=self._tenant_id,
                    workflow_id=workflow.info().workflow_id,
                    step=self._step(step),
                    chat_id=s.chat_id,
                    text=text,
                    reply_to_message_id=reply_to,
                ),  # fmt: skip
                # The bot's outbound queue, rate-limited by the server (Telegram's 30 messages/s).
                s.reply_task_queue,
            )
        except ActivityError as err:
            kind, message = steps.error_type(err)
            self._record(f"{step}:failed", "reply_failed", outcome="error", error=kind, message=message)
            return
        self._record(step, "reply_sent", message_id=sent.message_id, already_sent=sent.already_sent)
