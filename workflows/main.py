"""The "main" flow: one Telegram update → whitelist → parse → CALENDAR 2 AUTO → reply → audit.

Every outcome (unknown chat, disabled driver, chatter, a missing field, a calendar that is not
shared) ends with a clear reply and audit rows, never with a failed workflow.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
)

with workflow.unsafe.imports_passed_through():
    from activities.calendar import CalendarActivities
    from activities.llm import LlmActivities
    from activities.oauth import OAuthActivities
    from activities.orders import OrderStarter
    from activities.parsing import ParseActivities
    from activities.pictures import PictureActivities
    from activities.store import StoreActivities
    from activities.telegram import TelegramActivities
    from autodispatch import texts
    from autodispatch.db import SYSTEM_TENANT
    from schemas.audit import AuditEntry
    from schemas.calendar import Calendar2AutoInput, CalendarEvent, CancelEventInput
    from schemas.driver import Driver, DriverLookup
    from schemas.flow import MainResult, Outcome
    from schemas.lifecycle import OrderAction, OrderLifecycleInput, StartOrderWorkflowInput
    from schemas.oauth import ConnectLinkInput, DisconnectGrantInput, DisconnectGrantResult, PauseOrderInput
    from schemas.order import ORDER_DETAIL_FIELDS, OrderChunk, ParsedMessage, ParsedOrder
    from schemas.settings import SETTINGS_PREFIX
    from schemas.store import (
        AuthorizeOrderInput,
        FindOrderInput,
        FoundOrders,
        OrderRecord,
        OrderRef,
        OrderStatusInput,
        ParseOrderInput,
        QuestionInput,
    )
    from schemas.telegram import (
        AnswerCallbackInput,
        DriverAnswer,
        EditCardInput,
        PictureRead,
        ReadPictureInput,
        SendReplyInput,
        TelegramUpdateReceived,
    )
    from workflows import policies, steps
    from workflows.calendar2auto import Calendar2AutoWorkflow
    from workflows.driver_settings import (
        AGENDA_SETTINGS_PATCH,
        is_day_command,
        run_day_command,
        run_settings_press,
    )
    from workflows.ids import ORDER_ID, TENANT_ID, calendar_workflow_id, order_id_for
    from workflows.onboarding import route_to_onboarding
    from workflows.order import CHANGEABLE_FIELDS, OrderWorkflow, conflict_window
    from workflows.steps import UnreadableMessage, unreadable_on_parse_timeout


# What an unproven calendar's driver may still do: none of them reads or writes the calendar.
PROOF_FREE_COMMANDS = frozenset({"/connect", "/disconnect"})
# The step that reads order screenshots (OCR) before the parser.
PICTURE_PATCH = "order-screenshots"


@workflow.defn(name="MainWorkflow")
class MainWorkflow:
    def __init__(self) -> None:
        self._answers: list[DriverAnswer] = []
        self._audit: list[AuditEntry] = []  # every row of this flow; rows before _flushed are written
        self._flushed = 0
        self._tenant_id = SYSTEM_TENANT
        self._order_id: str | None = None
        # An order screenshot: the note its card carries ("read from a picture, check it"), if any.
        self._picture_note: str | None = None

    @workflow.signal(name="driver_answer")
    def driver_answer(self, answer: DriverAnswer) -> None:
        self._answers.append(answer)

    @workflow.query(name="audit_trail")
    def audit_trail(self) -> list[AuditEntry]:
        return self._audit

    # -- steps -------------------------------------------------------------------------
    def _record(
        self, step: str, action: str, update: TelegramUpdateReceived, outcome: str = "ok", **details: Any
    ) -> None:
        self._audit.append(
            AuditEntry(
                tenant_id=self._tenant_id,
                workflow_id=workflow.info().workflow_id,
                step=step,
                action=action,
                chat_id=update.chat_id,
                order_id=self._order_id,
                outcome=outcome,
                details=details,
            )
        )

    async def _flush(self, order: OrderRecord | None = None) -> None:
        rows = self._audit[self._flushed :]
        self._flushed = len(self._audit)
        await steps.write_audit(rows, order)

    async def _reply(
        self,
        update: TelegramUpdateReceived,
        step: str,
        text: str,
        buttons: list[list[dict[str, str]]] | None = None,
    ) -> int | None:
        try:
            sent = await steps.send_reply(
                SendReplyInput(
                    tenant_id=self._tenant_id,
                    workflow_id=workflow.info().workflow_id,
                    step=step,
                    chat_id=update.chat_id,
                    text=text,
                    reply_to_message_id=update.message_id,
                    buttons=buttons,
                ),
                # The bot's outbound queue, rate-limited by the server (Telegram's 30 messages/s).
                update.reply_task_queue,
            )
        except FailureError as err:
            kind, message = steps.error_type(err)
            self._record(
                f"{step}:failed", "reply_failed", update, outcome="error", error=kind, message=message
            )
            return None
        self._record(step, "reply_sent", update, message_id=sent.message_id, already_sent=sent.already_sent)
        return sent.message_id

    async def _parse(
        self, text: str, update: TelegramUpdateReceived, driver: Driver, mode: str = "order"
    ) -> ParsedOrder:
        with unreadable_on_parse_timeout():
            return await workflow.execute_local_activity_method(
                ParseActivities.parse_order,
                _parse_input(text, update, driver, "fields" if mode == "fields" else "order"),
                summary=f"parse the {mode}",
                start_to_close_timeout=policies.PARSE_TIMEOUT,
                retry_policy=policies.PARSE_RETRY,
            )

    async def _end(
        self, update: TelegramUpdateReceived, outcome: Outcome, step: str, text: str, **details: Any
    ) -> MainResult:
        message_id = await self._reply(update, step, text)
        self._record("outcome", outcome, update, **details)
        await self._flush()
        return MainResult(outcome=outcome, tenant_id=self._tenant_id, reply_message_id=message_id)

    async def _set_question(self, driver: Driver, open_: bool) -> None:
        await workflow.execute_local_activity_method(
            StoreActivities.set_open_question,
            QuestionInput(
                tenant_id=driver.tenant_id,
                chat_id=driver.chat_id,
                workflow_id=workflow.info().workflow_id,
                open=open_,
            ),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
        )

    # -- the flow ----------------------------------------------------------------------
    @workflow.run
    async def run(self, update: TelegramUpdateReceived) -> MainResult:
        lang = texts.language_for(update.language_code)
        seen = {
            "edited": update.edited,
            "reply_to": update.reply_to_message_id,
            "forwarded_from": update.forwarded_from,
        }
        self._record(
            "received", "update_received", update, kind=update.kind, text=update.text[:4096],
            **{k: v for k, v in seen.items() if v},
        )  # fmt: skip

        lookup = await steps.lookup_driver(update.chat_id, update.bot_id)
        driver = lookup.driver
        if driver is None:
            if lookup.bot_tenant_id:  # a stranger of the tenant whose own bot this is
                self._tenant_id = lookup.bot_tenant_id
                for row in self._audit:
                    row.tenant_id = lookup.bot_tenant_id
            return await self._on_unknown_chat(update, lang)

        # From here on everything belongs to the driver's tenant (the received row too).
        self._tenant_id = driver.tenant_id
        for row in self._audit:
            row.tenant_id = driver.tenant_id
        memo = {"driver": driver.driver_name, "calendar_id": driver.calendar_id}
        # The edge gives them at the start, where they ride on it; each upsert is a visibility write.
        at_start = workflow.patched("attributes-at-start")
        if not at_start or workflow.info().typed_search_attributes.get(TENANT_ID) != driver.tenant_id:
            workflow.upsert_search_attributes([TENANT_ID.value_set(driver.tenant_id)])
        if not at_start or any(workflow.memo_value(k, None, type_hint=str) != v for k, v in memo.items()):
            workflow.upsert_memo(memo)
        self._record("whitelist", "driver_resolved", update, driver=driver.driver_name, status=driver.status)
        if driver.settings.language:  # the driver's /settings choice beats their Telegram app's language
            lang = driver.settings.language

        if (
            not driver.calendar_proven
            and driver.status != "disabled"
            and update.kind != "callback"
            and texts.command_name(update.text) not in PROOF_FREE_COMMANDS
        ):
            # Naming a calendar is not owning it: nothing is read from or written to it until the row
            # carries a proof (a button on an earlier card acts on its own order's calendar; /connect
            # may be the proof itself: the driver's own Google account).
            return await self._end(
                update, "calendar_unproven", "refusal",
                texts.t(lang, "calendar_prove", calendar_id=driver.calendar_id, code=driver.calendar_code or "?"),
                calendar_id=driver.calendar_id,
            )  # fmt: skip
        if driver.status != "active":
            key = "driver_pending" if driver.status == "pending" else "driver_disabled"
            return await self._end(update, "driver_disabled", "refusal", texts.t(lang, key))
        if update.kind == "callback":
            return await self._on_button(update, driver, lang)
        if update.kind == "unsupported":
            return await self._end(update, "unsupported_message", "reply", texts.t(lang, "send_text"))
        if update.kind == "command":
            return await self._on_command(update, driver, lang)
        if update.kind == "photo":
            # Order screenshots (OCR); histories recorded before it never saw a "photo" update.
            if workflow.patched(PICTURE_PATCH):
                read = await self._read_picture(update, lang)
                if isinstance(read, MainResult):
                    return read
                update = read
            else:
                update = update.model_copy(update={"kind": "text"})

        try:
            return await self._on_message(update, driver, lookup, lang)
        except UnreadableMessage as err:
            # The parser gave up on this text within its time limit: said so, never a stuck worker.
            self._record(
                "parse", "parse_failed", update, outcome="error", error=err.kind, message=err.message
            )
            return await self._end(update, "parse_failed", "reply", texts.t(lang, "order_unreadable"))

    async def _on_message(
        self, update: TelegramUpdateReceived, driver: Driver, lookup: DriverLookup, lang: str
    ) -> MainResult:
        """A message of an active driver: a change to an order, one or several new orders, an answer."""
        # Added with the order card: changes to written orders, several orders in one message.
        lifecycle = workflow.patched("order-lifecycle")
        several: list[OrderChunk] = []
        if lifecycle:
            changed = await self._change_existing_order(update, driver, lang)
            if changed is not None:
                return changed
            message = await self._parse_message(update, driver)
            parsed, several = message.order, message.orders
        else:
            parsed = await self._parse(update.text, update, driver)
        if len(several) >= 2:
            return await self._write_orders(update, driver, several, lang)
        reschedule = lifecycle and texts.is_reschedule(update.text)
        if reschedule or (lifecycle and parsed.is_order and parsed.client_phone):
            # "перенос +7 916 … на 21:00" is no order on its own: read every field it names.
            named = (
                parsed if parsed.is_order else await self._parse(update.text, update, driver, mode="fields")
            )
            if named.client_phone:
                changed = await self._change_related_order(update, driver, named, lang)
                if changed is not None:
                    return changed
        pending = lookup.pending_question_workflow_id
        if pending and pending != workflow.info().workflow_id and parsed.missing_fields():
            # Not a complete order on its own: it answers the question another flow asked.
            if await self._forward_answer(pending, update):
                self._record("outcome", "answer_forwarded", update, to_workflow=pending)
                await self._flush()
                return MainResult(outcome="answer_forwarded", tenant_id=self._tenant_id)

        looks_like_order = parsed.is_order or (
            parsed.pickup_address is not None and (parsed.dropoff_address or parsed.price_amount) is not None
        )
        if not looks_like_order:
            if lifecycle and texts.is_reschedule(update.text):
                return await self._end(update, "change_unclear", "reply", texts.t(lang, "change_which"))
            key = "picture_no_order" if self._picture_note else "help"
            return await self._end(update, "not_an_order", "reply", texts.t(lang, key))
        # Added after the first release: histories recorded before it replay without the step.
        if parsed.missing_fields() and workflow.patched("llm-fallback"):
            parsed = await self._fill_from_llm(update, driver, parsed)

        text = update.text
        asked = 0
        while missing := parsed.missing_fields():
            if asked >= policies.MAX_QUESTIONS:
                await self._set_question(driver, False)
                return await self._end(
                    update, "no_answer", "reply", texts.t(lang, "no_answer"), missing=missing
                )
            asked += 1
            await self._set_question(driver, True)
            await self._reply(update, f"ask-{asked}", texts.t(lang, f"ask_{missing[0]}"))
            self._record(f"ask-{asked}:asked", "question_asked", update, missing=missing)
            await self._flush()
            try:
                await workflow.wait_condition(lambda: bool(self._answers), timeout=policies.ANSWER_WAIT)
            except TimeoutError:
                await self._set_question(driver, False)
                return await self._end(
                    update, "no_answer", "reply", texts.t(lang, "no_answer"), missing=missing
                )
            answer = self._answers.pop(0)
            self._record(f"ask-{asked}:answer", "driver_answered", update, text=answer.text[:4096])
            if answer.text.strip().lower().strip(".!") in texts.CANCEL_WORDS:
                await self._set_question(driver, False)
                return await self._end(update, "cancelled_by_driver", "reply", texts.t(lang, "cancelled"))
            text = f"{text}\n{answer.text}"
            parsed = await self._parse(text, update, driver)
        if asked:
            await self._set_question(driver, False)

        return await self._write_order(update, driver, parsed, text, lang, lifecycle=lifecycle)

    async def _read_picture(
        self, update: TelegramUpdateReceived, lang: str
    ) -> TelegramUpdateReceived | MainResult:
        """The screenshot's text read with OCR, after its caption (the caption is what the driver or the
        dispatcher typed: the surer half). Returns the update as a text, or the flow's end when there is
        nothing to read: no OCR here, an unreadable picture, and no caption to go by."""
        read = PictureRead(status="unreadable", message="no picture in the message")
        if update.file_id:
            try:
                read = await workflow.execute_activity_method(
                    PictureActivities.read_picture,
                    ReadPictureInput(
                        file_id=update.file_id,
                        chat_id=update.chat_id,
                        workflow_id=workflow.info().workflow_id,
                        bot_id=update.bot_id,
                    ),
                    start_to_close_timeout=policies.PICTURE_TIMEOUT,
                    retry_policy=policies.PICTURE_RETRY,
                )
            except ActivityError as err:
                kind, message = steps.error_type(err)
                read = PictureRead(status="unreadable", message=f"{kind}: {message}")
        caption = update.text.strip()
        self._record(
            "picture", "picture_read", update, outcome="ok" if read.status == "ok" else read.status,
            chars=len(read.text), seconds=read.seconds, size=[read.width, read.height], message=read.message,
            text=read.text[:4096],
        )  # fmt: skip
        if read.status == "ok" and read.text.strip():
            self._picture_note = texts.t(lang, "picture_note")
            text = f"{caption}\n{read.text}" if caption else read.text
            return update.model_copy(update={"kind": "text", "text": text})
        if caption:  # the caption alone, as before pictures were read; the card says if the picture failed
            if read.status != "ok":
                self._picture_note = texts.t(lang, "picture_caption_only")
            return update.model_copy(update={"kind": "text"})
        if read.status == "ok":  # a picture with no text in it (a photo of a car, a blank screen)
            return await self._end(update, "not_an_order", "reply", texts.t(lang, "picture_no_order"))
        key = "picture_unavailable" if read.status == "unavailable" else "picture_unreadable"
        return await self._end(update, "picture_unreadable", "reply", texts.t(lang, key), reason=read.status)

    async def _on_unknown_chat(self, update: TelegramUpdateReceived, lang: str) -> MainResult:
        """A chat that is not on the whitelist. Since onboarding (#6 phase 2): `/start` starts (or
        resumes) the chat's one OnboardingWorkflow, and any other message of a chat in onboarding
        continues it; a button press, or a chat with no dialogue, is refused with its chat id as before.
        Histories recorded before it replay without the step (no marker: the old refusal)."""
        if update.kind != "callback" and workflow.patched("onboarding"):
            routed = await route_to_onboarding(update)
            if routed is not None:
                self._record("outcome", routed, update, kind=update.kind)
                await self._flush()
                return MainResult(outcome=routed, tenant_id=self._tenant_id)
            return await self._end(
                update, "unknown_chat", "refusal", texts.t(lang, "unknown_chat_start", chat_id=update.chat_id)
            )
        return await self._end(
            update, "unknown_chat", "refusal", texts.t(lang, "unknown_chat", chat_id=update.chat_id)
        )

    async def _on_command(self, update: TelegramUpdateReceived, driver: Driver, lang: str) -> MainResult:
        """A bot command of a whitelisted driver (the edge hands over those in bot.handlers.commands)."""
        command = texts.command_name(update.text)
        # The agenda and the settings card (#5); histories recorded before them replay the help reply.
        if is_day_command(command) and workflow.patched(AGENDA_SETTINGS_PATCH):
            what, message_id = await run_day_command(update, driver, command)
            self._record("outcome", what, update, command=command)
            await self._flush()
            outcome: Outcome = "settings" if command == "/settings" else "agenda"
            return MainResult(outcome=outcome, tenant_id=self._tenant_id, reply_message_id=message_id)
        # One-button Google OAuth (#6 phase 4): a consent link signed for this chat, valid 10 minutes.
        # Histories recorded before it replay the help reply.
        if command == "/connect" and workflow.patched("oauth-connect"):
            link = await workflow.execute_local_activity_method(
                OAuthActivities.create_connect_link,
                ConnectLinkInput(
                    tenant_id=driver.tenant_id,
                    chat_id=driver.chat_id,
                    workflow_id=workflow.info().workflow_id,
                    language=lang,
                ),
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_RETRY,
            )
            if link.url is None:
                return await self._end(
                    update, "command", "reply", texts.t(lang, "connect_unavailable"), command=command
                )
            message_id = await self._reply(
                update, "reply", texts.t(lang, "connect_intro"),
                buttons=[[{"text": texts.t(lang, "connect_button"), "url": link.url}]],
            )  # fmt: skip
            self._record("outcome", "connect_link_sent", update, command=command, nonce=link.nonce)
            await self._flush()
            return MainResult(outcome="command", tenant_id=self._tenant_id, reply_message_id=message_id)
        # The driver ends the bot's use of their Google account (revoked at Google too); orders then go
        # through the calendar's sharing with the service account again. Older histories replay the help.
        if command == "/disconnect" and workflow.patched("oauth-disconnect"):
            return await self._disconnect(update, driver, lang, command)
        return await self._end(update, "command", "reply", texts.t(lang, "help"), command=command)

    async def _disconnect(
        self, update: TelegramUpdateReceived, driver: Driver, lang: str, command: str
    ) -> MainResult:
        try:
            done: DisconnectGrantResult = await workflow.execute_activity_method(
                OAuthActivities.disconnect_grant,
                DisconnectGrantInput(tenant_id=driver.tenant_id, chat_id=driver.chat_id),
                task_queue=driver.task_queue or workflow.info().task_queue,
                start_to_close_timeout=policies.OAUTH_TIMEOUT,
                schedule_to_close_timeout=policies.OAUTH_GIVE_UP,
                retry_policy=policies.OAUTH_RETRY,
                priority=Priority(fairness_key=driver.tenant_id),
            )
        except ActivityError as err:
            kind, message = steps.error_type(err)
            self._record(
                "disconnect", "oauth_disconnect_failed", update, outcome="error", error=kind, message=message
            )
            return await self._end(
                update, "command", "reply", texts.t(lang, "disconnect_failed"), command=command
            )
        if not done.configured:
            text, action = texts.t(lang, "connect_unavailable"), "oauth_not_configured"
        elif done.had_grant:
            text, action = texts.t(lang, "disconnected", calendar_id=driver.calendar_id), "oauth_disconnected"
        else:
            text, action = (
                texts.t(lang, "disconnect_nothing", calendar_id=driver.calendar_id),
                "oauth_not_connected",
            )
        message_id = await self._reply(update, "reply", text)
        self._record("outcome", action, update, command=command, google=done.google)
        await self._flush()
        return MainResult(outcome="command", tenant_id=self._tenant_id, reply_message_id=message_id)

    async def _fill_from_llm(
        self, update: TelegramUpdateReceived, driver: Driver, parsed: ParsedOrder
    ) -> ParsedOrder:
        """Ask the optional LLM for what the rules left missing or ambiguous; keep every rule-found value."""
        try:
            guess = await workflow.execute_local_activity_method(
                LlmActivities.parse_with_llm,
                _parse_input(update.text, update, driver),
                start_to_close_timeout=policies.LLM_TIMEOUT,
                retry_policy=policies.LLM_RETRY,
            )
        except (ActivityError, ApplicationError) as err:  # a local activity's failure may come bare
            kind, message = steps.error_type(err)
            self._record("llm", "llm_failed", update, outcome="error", error=kind, message=message)
            return parsed
        if guess is None:
            return parsed
        gaps = [f for f in ORDER_DETAIL_FIELDS if getattr(parsed, f) is None or f in parsed.ambiguous]
        filled = {f: getattr(guess, f) for f in gaps if getattr(guess, f) is not None}
        if not filled:
            return parsed
        self._record("llm", "llm_filled", update, fields=sorted(filled))
        return parsed.model_copy(
            update={**filled, "ambiguous": [f for f in parsed.ambiguous if f not in filled], "is_order": True}
        )

    async def _answer_button(self, update: TelegramUpdateReceived, text: str, alert: bool = False) -> None:
        if not update.callback_query_id:
            return
        try:
            await workflow.execute_activity_method(
                TelegramActivities.answer_callback,
                AnswerCallbackInput(callback_query_id=update.callback_query_id, text=text, show_alert=alert),
                task_queue=update.reply_task_queue,
                start_to_close_timeout=policies.TELEGRAM_TIMEOUT,
                # Telegram forgets an unanswered press after a while; retrying past that is pointless.
                schedule_to_close_timeout=policies.CALLBACK_GIVE_UP,
                retry_policy=policies.TELEGRAM_RETRY,
            )
        except FailureError as err:
            self._record(
                "answer:failed",
                "callback_answer_failed",
                update,
                outcome="error",
                error=steps.error_type(err)[0],
            )

    async def _on_button(self, update: TelegramUpdateReceived, driver: Driver, lang: str) -> MainResult:
        """A press on an order card. Callback data comes from the client: the order it names is acted
        on only if it is this chat's own (authorize_order audits and refuses anything else)."""
        data = update.callback_data or ""
        if data.startswith(SETTINGS_PREFIX) and workflow.patched(AGENDA_SETTINGS_PATCH):
            # A press on the /settings card (#5), not an order card.
            what, _ = await run_settings_press(update, driver)
            self._record("outcome", what, update, data=data[:64])
            await self._flush()
            return MainResult(
                outcome="settings", tenant_id=self._tenant_id, reply_message_id=update.message_id
            )
        # "cancel:<order>", "ok:<order>", "edit:<order>", "back:<order>", "field:<name>:<order>"
        action, _, rest = (update.callback_data or "").partition(":")
        field, _, order_id = rest.rpartition(":")
        if action not in _BUTTON_ACTIONS or not order_id or bool(field) != (action == "field"):
            await self._answer_button(update, texts.t(lang, "unknown_button"))
            self._record("outcome", "button_unknown", update, data=(update.callback_data or "")[:64])
            await self._flush()
            return MainResult(outcome="button_unknown", tenant_id=self._tenant_id)
        self._order_id = order_id
        try:
            order: OrderRef = await workflow.execute_local_activity_method(
                StoreActivities.authorize_order,
                AuthorizeOrderInput(
                    chat_id=update.chat_id, order_id=order_id, workflow_id=workflow.info().workflow_id
                ),
                start_to_close_timeout=policies.DB_TIMEOUT,
                retry_policy=policies.DB_RETRY,
            )
        except (ActivityError, ApplicationError) as err:  # a local activity's failure may come bare
            if steps.error_type(err)[0] != "OrderForbidden":
                raise
            await self._answer_button(update, texts.t(lang, "not_your_order"), alert=True)
            self._record(
                "outcome", "callback_denied", update, outcome="denied", data=(update.callback_data or "")[:64]
            )
            await self._flush()
            return MainResult(outcome="callback_denied", tenant_id=self._tenant_id, order_id=order_id)
        if workflow.patched("order-lifecycle"):
            press = OrderAction(
                action=_BUTTON_ACTIONS[action], field=field or None, source="button",
                callback_query_id=update.callback_query_id, chat_id=update.chat_id,
                message_id=update.message_id, received_at=update.received_at,
                update_workflow_id=workflow.info().workflow_id,
            )  # fmt: skip
            if await self._signal_order(order, press):
                self._record(
                    "outcome", "button_forwarded", update, button=action, to_workflow=order.order_workflow_id
                )
                await self._flush()
                return MainResult(outcome="button_forwarded", tenant_id=self._tenant_id, order_id=order_id)
            if action != "cancel":  # the order's workflow has ended: only ❌ still means something
                await self._answer_button(update, texts.t(lang, "order_gone"), alert=True)
                self._record("outcome", "button_expired", update, button=action)
                await self._flush()
                return MainResult(outcome="button_unknown", tenant_id=self._tenant_id, order_id=order_id)
        if order.status != "cancelled" and order.calendar_id and order.event_id:
            try:
                removed = await workflow.execute_activity_method(
                    CalendarActivities.cancel_event,
                    CancelEventInput(
                        calendar_id=order.calendar_id,
                        event_id=order.event_id,
                        tenant_id=order.tenant_id,
                        chat_id=order.chat_id,
                    ),  # fmt: skip
                    task_queue=driver.task_queue or workflow.info().task_queue,
                    start_to_close_timeout=policies.CALENDAR_TIMEOUT,
                    schedule_to_close_timeout=policies.CALENDAR_GIVE_UP,
                    retry_policy=policies.CALENDAR_RETRY,
                    priority=Priority(fairness_key=driver.tenant_id),
                )
            except ActivityError as err:
                kind, message = steps.error_type(err)
                reason = texts.t(lang, "calendar_failed", reason=kind or "error")
                await self._answer_button(update, reason, alert=True)
                self._record(
                    "calendar", "cancel_failed", update, outcome="error", error=kind, message=message
                )
                await self._flush()
                return MainResult(outcome="calendar_failed", tenant_id=self._tenant_id, order_id=order_id)
            self._record("calendar", "event_cancelled", update, event_id=order.event_id, was_there=removed)
        already = order.status == "cancelled"
        await workflow.execute_local_activity_method(
            StoreActivities.set_order_status,
            OrderStatusInput(tenant_id=order.tenant_id, order_id=order_id, status="cancelled"),
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
        )
        await self._answer_button(
            update, texts.t(lang, "already_cancelled" if already else "order_cancelled")
        )
        if update.message_id and not already:
            await workflow.execute_activity_method(
                TelegramActivities.edit_card,
                EditCardInput(
                    chat_id=update.chat_id,
                    message_id=update.message_id,
                    text=f"{update.text}\n\n{texts.t(lang, 'card_cancelled')}",
                ),  # fmt: skip
                task_queue=update.reply_task_queue,
                start_to_close_timeout=policies.TELEGRAM_TIMEOUT,
                schedule_to_close_timeout=policies.TELEGRAM_GIVE_UP,
                retry_policy=policies.TELEGRAM_RETRY,
            )
        self._record("outcome", "order_cancelled", update, already=already)
        await self._flush()
        return MainResult(outcome="order_cancelled", tenant_id=self._tenant_id, order_id=order_id)

    # -- changes to orders already written ------------------------------------------------
    async def _parse_message(self, update: TelegramUpdateReceived, driver: Driver) -> ParsedMessage:
        with unreadable_on_parse_timeout():
            return await workflow.execute_local_activity_method(
                ParseActivities.parse_message,
                _parse_input(update.text, update, driver),
                summary="parse the message",
                start_to_close_timeout=policies.PARSE_TIMEOUT,
                retry_policy=policies.PARSE_RETRY,
            )

    async def _find_orders(self, req: FindOrderInput) -> FoundOrders:
        return await workflow.execute_local_activity_method(
            StoreActivities.find_orders,
            req,
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
        )

    async def _change_existing_order(
        self, update: TelegramUpdateReceived, driver: Driver, lang: str
    ) -> MainResult | None:
        """A reply to an order's card, or an edit of the message an order came from: that order changes
        (or is cancelled) instead of a new one being made. None: the message refers to no order."""
        if update.reply_to_message_id is None and not update.edited:
            return None
        found = await self._find_orders(
            FindOrderInput(
                tenant_id=driver.tenant_id,
                chat_id=driver.chat_id,
                card_message_id=update.reply_to_message_id,
                source_message_id=update.message_id if update.edited else None,
            )  # fmt: skip
        )
        if not found.orders:
            return None
        source = "message_edit" if found.matched_by == "source" else "reply"
        common = dict(
            text=update.text, source=source, chat_id=update.chat_id, message_id=update.message_id,
            received_at=update.received_at, update_workflow_id=workflow.info().workflow_id,
        )  # fmt: skip
        targets: list[tuple[OrderRef, OrderAction]] = []
        if texts.is_cancel(update.text):
            targets = [(o, OrderAction(action="cancel", **common)) for o in found.orders]
        elif source == "message_edit" and len(found.orders) > 1:
            chunks = (await self._parse_message(update, driver)).orders
            targets = [
                (o, OrderAction(action="change", order=chunks[o.order_index].order, **common))
                for o in found.orders
                if o.order_index < len(chunks)
            ]
        else:
            parsed = await self._parse(update.text, update, driver, mode="fields")
            if not any(getattr(parsed, f) is not None for f in CHANGEABLE_FIELDS):
                return None  # "спасибо" in reply to a card changes nothing: handled as any message
            targets = [(found.orders[0], OrderAction(action="change", order=parsed, **common))]
        return await self._send_to_orders(update, targets, lang, matched_by=found.matched_by or "")

    async def _change_related_order(
        self, update: TelegramUpdateReceived, driver: Driver, parsed: ParsedOrder, lang: str
    ) -> MainResult | None:
        """A new message about an order already written: "перенос на 10:30" with the client's phone, or
        the same client, day and route again. It changes that order instead of adding a second one."""
        reschedule = texts.is_reschedule(update.text)
        day_start = day_end = None
        if parsed.pickup_at is not None and (parsed.date_stated or not reschedule):
            day_start, day_end = texts.local_day(parsed.pickup_at, driver.time_zone)
        found = await self._find_orders(
            FindOrderInput(
                tenant_id=driver.tenant_id,
                chat_id=driver.chat_id,
                client_phone=parsed.client_phone,
                day_start=day_start,
                day_end=day_end,
                after=update.received_at if reschedule else None,
            )  # fmt: skip
        )
        if reschedule:
            chosen = found.orders if len(found.orders) == 1 else []
        else:  # a full order: only the same trip again is a change (a return trip is a new order)
            chosen = [o for o in found.orders if _same_route(o, parsed)][:1]
        if not chosen:
            return None
        action = OrderAction(
            action="change", order=parsed, text=update.text, source="related_message", chat_id=update.chat_id,
            message_id=update.message_id, received_at=update.received_at,
            update_workflow_id=workflow.info().workflow_id,
        )  # fmt: skip
        return await self._send_to_orders(
            update, [(chosen[0], action)], lang, matched_by=found.matched_by or ""
        )

    async def _send_to_orders(
        self,
        update: TelegramUpdateReceived,
        targets: list[tuple[OrderRef, OrderAction]],
        lang: str,
        matched_by: str,
    ) -> MainResult:
        for order, action in targets:
            self._order_id = order.order_id
            if await self._signal_order(order, action):
                self._record(f"change:{order.order_id}", "change_forwarded", update, requested=action.action,
                             matched_by=matched_by, to_workflow=order.order_workflow_id)  # fmt: skip
            else:
                await self._reply(update, f"gone:{order.order_id}", texts.t(lang, "order_gone"))
                self._record(f"change:{order.order_id}", "change_too_late", update, outcome="rejected",
                             requested=action.action, matched_by=matched_by)  # fmt: skip
        self._record("outcome", "order_change_forwarded", update, orders=[o.order_id for o, _ in targets])
        await self._flush()
        return MainResult(
            outcome="order_change_forwarded", tenant_id=self._tenant_id, order_id=targets[0][0].order_id,
            order_ids=[o.order_id for o, _ in targets],
        )  # fmt: skip

    async def _signal_order(self, order: OrderRef, action: OrderAction) -> bool:
        """Hand the action to the order's own workflow; False if it has ended (the order is over)."""
        if not order.order_workflow_id:
            return False
        handle = workflow.get_external_workflow_handle(order.order_workflow_id)
        try:
            await handle.signal(OrderWorkflow.order_action, action)
        except Exception as err:  # the order's workflow already ended
            workflow.logger.info("order workflow %s is gone: %s", order.order_workflow_id, err)
            return False
        return True

    async def _forward_answer(self, pending: str, update: TelegramUpdateReceived) -> bool:
        handle = workflow.get_external_workflow_handle(pending)
        try:
            await handle.signal(
                MainWorkflow.driver_answer,
                DriverAnswer(
                    text=update.text,
                    message_id=update.message_id,
                    update_workflow_id=workflow.info().workflow_id,
                ),
            )
        except Exception as err:  # the asking flow already ended: treat this message on its own
            workflow.logger.info("question workflow %s is gone: %s", pending, err)
            return False
        return True

    async def _write_orders(
        self, update: TelegramUpdateReceived, driver: Driver, chunks: list[OrderChunk], lang: str
    ) -> MainResult:
        """Several orders in one message: each gets its event, its card and its own workflow."""
        self._record("split", "orders_in_message", update, count=len(chunks))
        results = [
            await self._write_order(update, driver, c.order, c.text, lang, lifecycle=True, index=i)
            for i, c in enumerate(chunks)
        ]
        ids = [r.order_id for r in results if r.order_id]
        return MainResult(
            outcome="orders_created", tenant_id=self._tenant_id, order_id=ids[0] if ids else None,
            order_ids=ids, event_id=results[0].event_id, html_link=results[0].html_link,
            reply_message_id=results[0].reply_message_id,
        )  # fmt: skip

    async def _write_order(
        self,
        update: TelegramUpdateReceived,
        driver: Driver,
        parsed: ParsedOrder,
        text: str,
        lang: str,
        *,
        lifecycle: bool = False,
        index: int = 0,
    ) -> MainResult:
        assert update.message_id is not None
        sfx = f"#{index}" if index else ""  # the first (or only) order keeps the step names it always had
        self._order_id = order_id = order_id_for(driver.tenant_id, driver.chat_id, update.message_id, index)
        if not index and workflow.info().typed_search_attributes.get(ORDER_ID) != order_id:
            workflow.upsert_search_attributes([ORDER_ID.value_set(order_id)])
        summary = texts.workflow_summary(parsed, driver.time_zone, driver.driver_name)
        workflow.set_current_details(summary)
        self._record(f"parsed{sfx}", "order_parsed", update, order=parsed.to_flat_json())

        record = OrderRecord(
            tenant_id=driver.tenant_id, order_id=order_id, chat_id=driver.chat_id,
            workflow_id=workflow.info().workflow_id, status="received", order=parsed,
            calendar_id=driver.calendar_id, original_text=text,
            source_message_id=update.message_id if lifecycle else None, order_index=index,
        )  # fmt: skip
        settings = driver.settings
        calendar_write = Calendar2AutoInput(
            calendar_id=driver.calendar_id,
            time_zone=driver.time_zone,
            tenant_id=driver.tenant_id,
            chat_id=driver.chat_id,
            order_id=order_id,
            order=parsed,
            original_text=text,
            driver_name=driver.driver_name,
            language=lang,
            duration_minutes=settings.event_duration_minutes if lifecycle else None,
            conflict_window=conflict_window(settings) if lifecycle else None,
            local_write=True,
        )
        try:
            event: CalendarEvent = await workflow.execute_child_workflow(
                Calendar2AutoWorkflow.run,
                calendar_write,
                id=calendar_workflow_id(order_id),
                static_summary=summary,
                task_queue=driver.task_queue or workflow.info().task_queue,
                search_attributes=workflow.info().typed_search_attributes,
                priority=Priority(fairness_key=driver.tenant_id),
                execution_timeout=policies.CALENDAR_GIVE_UP + timedelta(hours=1),
            )
        except ChildWorkflowError as err:
            kind, message = steps.error_type(err)
            # The driver's own Google grant was revoked or expired (#6 phase 4): the whole calendar write
            # is kept and done when they /connect again (CalendarConnectedWorkflow); nothing is lost.
            if kind == "CalendarGrantRevoked" and workflow.patched("oauth-pause-on-revoked-grant"):
                await workflow.execute_local_activity_method(
                    OAuthActivities.pause_order,
                    PauseOrderInput(
                        tenant_id=driver.tenant_id,
                        chat_id=driver.chat_id,
                        order_id=order_id,
                        workflow_id=workflow.info().workflow_id,
                        calendar=calendar_write,  # the same write, done after /connect
                        reply_to_message_id=update.message_id,
                        reply_task_queue=update.reply_task_queue,
                    ),
                    start_to_close_timeout=policies.DB_TIMEOUT,
                    retry_policy=policies.DB_RETRY,
                )
                record.status = "awaiting_calendar"
                message_id = await self._reply(update, f"reply{sfx}", texts.t(lang, "calendar_reconnect"))
                self._record(
                    f"calendar{sfx}", "calendar_paused", update, outcome="paused", error=kind, message=message
                )
                self._record(f"outcome{sfx}", "calendar_paused", update)
                await self._flush(record)
                return MainResult(
                    outcome="calendar_paused", tenant_id=self._tenant_id, order_id=order_id,
                    reply_message_id=message_id,
                )  # fmt: skip
            key = {"CalendarNotFound": "calendar_not_found", "CalendarReadOnly": "calendar_read_only"}.get(
                kind, "calendar_failed"
            )
            record.status = "calendar_failed"
            reply = texts.t(lang, key, calendar_id=driver.calendar_id, reason=kind or "error")
            message_id = await self._reply(update, f"reply{sfx}", reply)
            self._record(
                f"calendar{sfx}", "calendar_failed", update, outcome="error", error=kind, message=message
            )
            self._record(f"outcome{sfx}", "calendar_failed", update)
            await self._flush(record)
            return MainResult(
                outcome="calendar_failed", tenant_id=self._tenant_id, order_id=order_id,
                reply_message_id=message_id,
            )  # fmt: skip

        record.status, record.event_id, record.html_link = "in_calendar", event.event_id, event.html_link
        self._record(
            f"calendar{sfx}", "event_created" if event.created else "event_existed", update,
            event_id=event.event_id, calendar_id=driver.calendar_id,
            conflicts=[c.event_id for c in event.conflicts],
        )  # fmt: skip
        if lifecycle:
            card = texts.order_card(
                parsed, driver.time_zone, lang, event.html_link, conflicts=event.conflicts
            )
            buttons = texts.card_buttons(order_id, lang, "in_calendar")
        else:
            card = texts.confirmation(parsed, driver.time_zone, lang, event.html_link)
            buttons = [[{"text": texts.t(lang, "cancel_button"), "callback_data": f"cancel:{order_id}"}]]
        if self._picture_note:
            card = texts.fit_telegram(f"{card}\n\n{self._picture_note}")
        message_id = await self._reply(update, f"reply{sfx}", card, buttons=buttons)
        if lifecycle:
            record.card_message_id = message_id
            record.order_workflow_id = await self._start_order_workflow(
                update, driver, record, event, lang, index
            )
        self._record(f"outcome{sfx}", "event_created", update)
        await self._flush(record)
        return MainResult(
            outcome="event_created", tenant_id=self._tenant_id, order_id=order_id,
            event_id=event.event_id, html_link=event.html_link, reply_message_id=message_id,
        )  # fmt: skip

    async def _start_order_workflow(
        self,
        update: TelegramUpdateReceived,
        driver: Driver,
        record: OrderRecord,
        event: CalendarEvent,
        lang: str,
        index: int,
    ) -> str:
        """The order's own workflow: its buttons, changes and reminder outlive this update's flow."""
        return await workflow.execute_local_activity_method(
            OrderStarter.start_order_workflow,
            StartOrderWorkflowInput(
                order=OrderLifecycleInput(
                    driver=driver,
                    order_id=record.order_id,
                    order=record.order,
                    event_id=event.event_id,
                    original_text=record.original_text,
                    source_message_id=update.message_id,
                    order_index=index,
                    card_message_id=record.card_message_id,
                    html_link=event.html_link,
                    conflicts=event.conflicts,
                    language=lang,
                    reply_task_queue=update.reply_task_queue,
                    touched_at=workflow.now(),
                ),
                task_queue=driver.task_queue or workflow.info().task_queue,
            ),
            start_to_close_timeout=policies.START_WORKFLOW_TIMEOUT,
            retry_policy=policies.START_WORKFLOW_RETRY,
        )


def _parse_input(
    text: str, update: TelegramUpdateReceived, driver: Driver, mode: Literal["order", "fields"] = "order"
) -> ParseOrderInput:
    """A text read as the driver would: from when the message was sent, in their zone and region."""
    return ParseOrderInput(
        text=text, now=update.received_at, tz=driver.time_zone, region=driver.region, currency=driver.currency,
        mode=mode,
    )  # fmt: skip


# Callback data's first part → the order workflow's action.
_BUTTON_ACTIONS = {"cancel": "cancel", "ok": "confirm", "edit": "edit", "back": "back", "field": "field"}


def _same_route(order: OrderRef, parsed: ParsedOrder) -> bool:
    def norm(value: str | None) -> str:
        return " ".join((value or "").lower().replace("ё", "е").split())

    return norm(order.pickup_address) == norm(parsed.pickup_address) and norm(order.dropoff_address) == norm(
        parsed.dropoff_address
    )
