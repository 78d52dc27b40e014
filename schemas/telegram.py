"""What the bot edge hands to Temporal: one Telegram update, reduced to what the flow needs."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

# "photo": a picture (a photo, or an image sent as a file) whose text is read with OCR; its caption is `text`.
MessageKind = Literal["text", "command", "unsupported", "callback", "photo"]


class TelegramUpdateReceived(BaseModel):
    """MainWorkflow's input. The workflow id is derived from bot_id and update_id."""

    bot_id: int
    update_id: int
    chat_id: int
    message_id: int | None = None
    text: str = ""
    kind: MessageKind = "text"
    sender_name: str | None = None
    language_code: str | None = None
    received_at: datetime
    edited: bool = False
    callback_data: str | None = None
    callback_query_id: str | None = None
    # Where replies are sent from (the bot's rate-limited outbound queue); None: the flow's own queue.
    reply_task_queue: str | None = None
    reply_to_message_id: int | None = None  # the message this one replies to (an order's card?)
    forwarded_from: str | None = None  # who wrote a forwarded message (a dispatcher, a client)
    file_id: str | None = None  # the picture of a "photo" message (Telegram's file id, fetched with getFile)
    chat_type: str | None = None  # Telegram's: private, group, supergroup, channel (None: not said)


def outbound_task_queue(bot_id: int) -> str:
    """One outbound queue per bot: Telegram's budget (30 messages/s) is the bot's."""
    return f"telegram-outbound-{bot_id}"


def main_workflow_id(bot_id: int, update_id: int) -> str:
    """Deterministic: a redelivered update maps to the same workflow and never runs twice."""
    return f"tg-{bot_id}-{update_id}"


class SendReplyInput(BaseModel):
    """A reply through the outbox: (workflow_id, step) is sent at most once."""

    tenant_id: str
    workflow_id: str
    step: str
    chat_id: int
    text: str
    reply_to_message_id: int | None = None
    # Inline keyboard rows: [[{"text": "...", "callback_data": "..."}]]
    buttons: list[list[dict[str, str]]] | None = None


class ReplySent(BaseModel):
    message_id: int | None = None
    already_sent: bool = False


class DriverAnswer(BaseModel):
    """Signal to a MainWorkflow waiting for the driver to complete or cancel an order."""

    text: str
    message_id: int | None = None
    update_workflow_id: str | None = None


class AnswerCallbackInput(BaseModel):
    """Telegram's spinner on a pressed button stops only when the press is answered."""

    callback_query_id: str
    text: str = ""
    show_alert: bool = False


class EditCardInput(BaseModel):
    """Edit an order card in place (never re-send it)."""

    chat_id: int
    message_id: int
    text: str
    buttons: list[list[dict[str, str]]] | None = None  # None removes the buttons


class ReadPictureInput(BaseModel):
    """An order screenshot to read: fetched from Telegram by its file id, then OCR."""

    file_id: str
    chat_id: int
    workflow_id: str


PictureStatus = Literal["ok", "unavailable", "unreadable", "timeout"]


class PictureRead(BaseModel):
    """What was read from a picture; a status other than "ok" says why nothing was (`message`)."""

    status: PictureStatus
    text: str = ""
    width: int | None = None
    height: int | None = None
    seconds: float | None = None
    message: str | None = None
