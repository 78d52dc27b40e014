"""/settings: the card with an inline keyboard, edited in place; every saved change is audited and the
driver's morning-agenda Schedule re-synced. A child of MainWorkflow per command or press."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import ActivityError, ChildWorkflowError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.driver_settings import SettingsActivities
    from activities.telegram import TelegramActivities
    from autodispatch import texts
    from schemas.agenda import AGENDA_COMMANDS, AgendaInput, AgendaResult
    from schemas.driver import Driver, DriverSettings
    from schemas.settings import (
        FIELD_ALIASES,
        FIELDS,
        SETTINGS_PREFIX,
        SaveSettingsInput,
        SettingsError,
        SettingsInput,
        SettingsResult,
        parse_value,
    )
    from schemas.telegram import AnswerCallbackInput, EditCardInput, SendReplyInput, TelegramUpdateReceived
    from workflows import policies, steps
    from workflows.agenda import AgendaWorkflow, sync_schedule

# Marks MainWorkflow's new branches (agenda commands, /settings, settings buttons) in histories.
AGENDA_SETTINGS_PATCH = "agenda-settings"

Buttons = list[list[dict[str, str]]]


@workflow.defn(name="SettingsWorkflow")
class SettingsWorkflow:
    @workflow.run
    async def run(self, req: SettingsInput) -> SettingsResult:
        lookup = await steps.lookup_driver(req.chat_id)
        driver = lookup.driver
        if driver is None or driver.tenant_id != req.tenant_id or driver.status != "active":
            await self._answer(req, "")
            return SettingsResult(action="skipped")
        if req.callback_data is not None:
            return await self._on_press(req, driver)
        return await self._on_command(req, driver)

    async def _on_command(self, req: SettingsInput, driver: Driver) -> SettingsResult:
        """/settings shows the card; /settings <field> <value> sets a value typed by hand (a zone or a
        time the buttons do not offer)."""
        lang, args = driver.settings.language or req.language or "ru", req.text.split()[1:]
        if not args:
            text, buttons = texts.settings_card(lang, driver.time_zone, driver.settings)
            return SettingsResult(action="card", message_id=await self._send(req, text, buttons))
        field = FIELD_ALIASES.get(args[0].lower())
        try:
            if field is None or len(args) < 2:
                raise SettingsError(" ".join(args))
            changes = parse_value(field, " ".join(args[1:]))
        except SettingsError:
            text = texts.t(lang, "settings_invalid", value=" ".join(args)[:100])
            return SettingsResult(action="invalid", message_id=await self._send(req, text, None))
        settings, time_zone = await self._save(req, driver, field, changes)
        lang = settings.language or lang  # a language just chosen answers in that language
        text, buttons = texts.settings_card(lang, time_zone, settings, note=texts.t(lang, "settings_saved"))
        return SettingsResult(
            action="saved", changed=changes, message_id=await self._send(req, text, buttons)
        )

    async def _on_press(self, req: SettingsInput, driver: Driver) -> SettingsResult:
        """A press on the card: open a field's choices, go back, or save a choice; the card is edited."""
        lang, s, tz = driver.settings.language or req.language or "ru", driver.settings, driver.time_zone
        kind, _, rest = (req.callback_data or "").removeprefix(SETTINGS_PREFIX).partition(":")
        if kind == "m":
            await self._show(req, *texts.settings_card(lang, tz, s))
            await self._answer(req, "")
            return SettingsResult(action="menu", message_id=req.message_id)
        if kind == "o" and rest in FIELDS:
            await self._show(req, *texts.settings_choices(lang, rest, tz, s))
            await self._answer(req, "")
            return SettingsResult(action="menu", message_id=req.message_id)
        field, _, value = rest.partition(":")
        try:
            # Callback data comes from the client: a forged field or value is refused like a typo.
            if kind != "v" or field not in FIELDS:
                raise SettingsError(rest)
            changes = parse_value(field, value)
        except SettingsError:
            await self._answer(req, texts.t(lang, "unknown_button"))
            return SettingsResult(action="invalid")
        s, tz = await self._save(req, driver, field, changes)
        lang = s.language or lang  # a language just chosen answers in that language
        await self._show(req, *texts.settings_card(lang, tz, s, note=texts.t(lang, "settings_saved")))
        await self._answer(req, texts.t(lang, "settings_saved"))
        return SettingsResult(action="saved", changed=changes, message_id=req.message_id)

    async def _save(
        self, req: SettingsInput, driver: Driver, field: str, changes: dict
    ) -> tuple[DriverSettings, str]:
        settings: DriverSettings = await workflow.execute_local_activity_method(
            SettingsActivities.save_driver_settings,
            SaveSettingsInput(
                tenant_id=driver.tenant_id,
                chat_id=driver.chat_id,
                workflow_id=workflow.info().workflow_id,
                step=f"settings:{field}",
                changes=changes,
            ),  # fmt: skip
            start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY,
        )
        try:
            # The morning agenda follows the new time, zone or on/off at once.
            await sync_schedule(driver.tenant_id, driver.chat_id)
        except ActivityError as err:  # the reconciler retries it within minutes; the setting is saved
            workflow.logger.warning("agenda schedule of %s not synced: %s", driver.chat_id, err)
        return settings, changes.get("time_zone", driver.time_zone)

    async def _send(self, req: SettingsInput, text: str, buttons: Buttons | None) -> int | None:
        try:
            sent = await steps.send_reply(
                SendReplyInput(
                    tenant_id=req.tenant_id,
                    workflow_id=workflow.info().workflow_id,
                    step="settings",
                    chat_id=req.chat_id,
                    text=text,
                    reply_to_message_id=req.message_id,
                    buttons=buttons,
                ),  # fmt: skip
                req.reply_task_queue,
            )
        except FailureError as err:
            workflow.logger.warning("settings card not sent to %s: %s", req.chat_id, err)
            return None
        return sent.message_id

    async def _show(self, req: SettingsInput, text: str, buttons: Buttons) -> None:
        """The pressed card, edited in place (never re-sent)."""
        if req.message_id is None:  # a press Telegram sent without its message (too old): send anew
            await self._send(req, text, buttons)
            return
        try:
            await workflow.execute_activity_method(
                TelegramActivities.edit_card,
                EditCardInput(chat_id=req.chat_id, message_id=req.message_id, text=text, buttons=buttons),
                task_queue=req.reply_task_queue,
                start_to_close_timeout=policies.TELEGRAM_TIMEOUT,
                schedule_to_close_timeout=policies.TELEGRAM_GIVE_UP,
                retry_policy=policies.TELEGRAM_RETRY,
            )
        except FailureError as err:
            workflow.logger.warning("settings card of %s not edited: %s", req.chat_id, err)

    async def _answer(self, req: SettingsInput, text: str) -> None:
        if not req.callback_query_id:
            return
        try:
            await workflow.execute_activity_method(
                TelegramActivities.answer_callback,
                AnswerCallbackInput(callback_query_id=req.callback_query_id, text=text),
                task_queue=req.reply_task_queue,
                start_to_close_timeout=policies.TELEGRAM_TIMEOUT,
                # Telegram forgets an unanswered press after a while; retrying past that is pointless.
                schedule_to_close_timeout=policies.CALLBACK_GIVE_UP,
                retry_policy=policies.TELEGRAM_RETRY,
            )
        except FailureError as err:
            workflow.logger.info("callback of %s not answered: %s", req.chat_id, err)


# -- called by MainWorkflow (workflow code: runs inside the parent) ----------------------------------
def is_day_command(command: str) -> bool:
    """The commands MainWorkflow hands to these flows (behind AGENDA_SETTINGS_PATCH)."""
    return command in AGENDA_COMMANDS or command == "/settings"


async def run_day_command(
    update: TelegramUpdateReceived, driver: Driver, command: str
) -> tuple[str, int | None]:
    """/today, /tomorrow, /week or /settings as a child workflow; (what happened, the reply's message id)."""
    parent = workflow.info()
    options = {
        "task_queue": driver.task_queue or parent.task_queue,
        "search_attributes": parent.typed_search_attributes,
        "priority": Priority(fairness_key=driver.tenant_id),
        "execution_timeout": policies.TELEGRAM_GIVE_UP,
    }
    try:
        if command in AGENDA_COMMANDS:
            agenda: AgendaResult = await workflow.execute_child_workflow(
                AgendaWorkflow.run,
                AgendaInput(
                    tenant_id=driver.tenant_id,
                    chat_id=driver.chat_id,
                    kind=AGENDA_COMMANDS[command],
                    now=update.received_at,
                    reply_to_message_id=update.message_id,
                    reply_task_queue=update.reply_task_queue,
                    language=texts.language_for(update.language_code),
                ),
                id=f"{parent.workflow_id}-agenda",
                **options,  # type: ignore[arg-type]
            )
            return f"agenda_{agenda.outcome}", agenda.message_id
        result: SettingsResult = await workflow.execute_child_workflow(
            SettingsWorkflow.run,
            settings_input(update, driver),
            id=f"{parent.workflow_id}-settings",
            **options,  # type: ignore[arg-type]
        )
    except ChildWorkflowError as err:
        workflow.logger.warning("%s failed: %s", command, err)
        return "failed", None
    return f"settings_{result.action}", result.message_id


def settings_input(update: TelegramUpdateReceived, driver: Driver) -> SettingsInput:
    return SettingsInput(
        tenant_id=driver.tenant_id, chat_id=driver.chat_id, text=update.text,
        callback_data=update.callback_data if update.kind == "callback" else None,
        callback_query_id=update.callback_query_id, message_id=update.message_id,
        reply_task_queue=update.reply_task_queue, language=texts.language_for(update.language_code),
    )  # fmt: skip


async def run_settings_press(update: TelegramUpdateReceived, driver: Driver) -> tuple[str, int | None]:
    """A press on the settings card (callback data "set:…") as a child workflow."""
    parent = workflow.info()
    try:
        result: SettingsResult = await workflow.execute_child_workflow(
            SettingsWorkflow.run,
            settings_input(update, driver),
            id=f"{parent.workflow_id}-settings",
            task_queue=driver.task_queue or parent.task_queue,
            search_attributes=parent.typed_search_attributes,
            priority=Priority(fairness_key=driver.tenant_id),
            execution_timeout=policies.TELEGRAM_GIVE_UP,
        )
    except ChildWorkflowError as err:
        workflow.logger.warning("settings press failed: %s", err)
        return "failed", None
    return f"settings_{result.action}", result.message_id
