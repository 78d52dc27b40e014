"""Steps every flow takes the same way: classify a failure, write its audit rows (and the order's row),
send a reply through the bot's outbound queue. One place, so timeouts and retries stay alike."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.store import StoreActivities
    from activities.telegram import TelegramActivities
    from schemas.audit import AuditEntry
    from schemas.driver import DriverLookup, LookupDriverInput
    from schemas.order import PARSE_TIMEOUT_ERROR
    from schemas.store import FinishStepInput, OrderRecord
    from schemas.telegram import ReplySent, SendReplyInput
    from workflows import policies


def error_type(err: BaseException | None) -> tuple[str, str]:
    """The first ApplicationError's type and message under child → activity wrappers. (Its own causes,
    e.g. the HttpError it was raised from, are details, not the classification.)"""
    message = str(err) if err else ""
    while err is not None:
        if isinstance(err, ApplicationError):
            return err.type or "", err.message
        err = err.cause if isinstance(err, FailureError) else None
    return "", message


class UnreadableMessage(Exception):
    """The parser gave up on a message within its time limit (raised inside a flow, never out of it)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


@contextmanager
def unreadable_on_parse_timeout() -> Iterator[None]:
    """Turn the parse step's "took too long" into UnreadableMessage; anything else stays as it is."""
    try:
        yield
    except (ActivityError, ApplicationError) as err:  # a local activity's failure may come bare
        kind, message = error_type(err)
        if kind != PARSE_TIMEOUT_ERROR:
            raise
        raise UnreadableMessage(kind, message) from err


async def lookup_driver(chat_id: int, bot_id: int | None = None) -> DriverLookup:
    """The whitelist's answer for a chat, read when the flow runs (never cached across runs). Through a
    tenant's own bot only that tenant's drivers are known."""
    return await workflow.execute_local_activity_method(
        StoreActivities.lookup_driver,
        LookupDriverInput(chat_id=chat_id, bot_id=bot_id),
        summary=f"whitelist: chat {chat_id}",
        start_to_close_timeout=policies.DB_TIMEOUT,
        retry_policy=policies.DB_RETRY,
    )


async def write_audit(rows: list[AuditEntry], order: OrderRecord | None = None) -> None:
    """Audit rows (once per workflow step) and, if given, the order's row, in one transaction per tenant."""
    await workflow.execute_local_activity_method(
        StoreActivities.finish_step,
        FinishStepInput(audit=rows, order=order),
        summary=f"audit: {', '.join(dict.fromkeys(r.action for r in rows))}"[:200],
        start_to_close_timeout=policies.DB_TIMEOUT,
        retry_policy=policies.DB_RETRY,
    )


async def send_reply(req: SendReplyInput, task_queue: str | None) -> ReplySent:
    """Through the outbox, on the bot's outbound queue (rate-limited by the server: Telegram's 30/s).
    Raises the activity's failure after the give-up time; callers audit it."""
    return await workflow.execute_activity_method(
        TelegramActivities.send_reply,
        req,
        summary=f"reply {req.step} to chat {req.chat_id}",
        task_queue=task_queue or workflow.info().task_queue,
        start_to_close_timeout=policies.TELEGRAM_TIMEOUT,
        schedule_to_close_timeout=policies.TELEGRAM_GIVE_UP,
        retry_policy=policies.TELEGRAM_RETRY,
        priority=Priority(fairness_key=req.tenant_id),
    )
