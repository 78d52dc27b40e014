"""What the bot edge hands to Temporal: one Telegram update, reduced to what the flow needs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

# "photo": a picture (a photo, or an image sent as a file) whose text is read with OCR; its caption is `text`.
MessageKind = Literal["text", "command", "unsupported", "callback", "photo"]


# Telegram's ids fit a signed 64-bit integer (bigint in the stores); anything beyond is not Telegram's.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TelegramId = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]


def id_out_of_range(obj: Any, path: str = "update") -> str | None:
    """The first id (`id` or `*_id`) in a Telegram JSON object that does not fit int64, as
    `message.chat.id = 9…`; None when all fit. Such an update is refused, never half-processed."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            here = f"{path}.{key}"
            if (
                (key == "id" or str(key).endswith("_id"))
                and isinstance(value, int)
                and not isinstance(value, bool)
                and not INT64_MIN <= value <= INT64_MAX
            ):
                shown = str(value)
                return f"{here} = {shown[:24]}{'…' if len(shown) > 24 else ''} is out of range"
            found = id_out_of_range(value, here)
            if found:
                return found
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found = id_out_of_range(value, f"{path}[{i}]")
            if found:
                return found
    return None


class TelegramUpdateReceived(BaseModel):
    """MainWorkflow's input. The workflow id is derived from bot_id and update_id."""

    bot_id: TelegramId
    update_id: TelegramId
    chat_id: TelegramId
    message_id: TelegramId | None = None
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

    @field_validator("text", "sender_name", "callback_data", "forwarded_from", mode="before")
    @classmethod
    def _without_nul(cls, value: object) -> object:
        # U+0000 means nothing in a message, and PostgreSQL cannot store it (text or jsonb): kept, it
        # would make the update one the inbox can never take, redelivered forever.
        return value.replace("\x00", "") if isinstance(value, str) else value


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
    bot_id: int | None = None  # the bot the picture was sent to (None: the default bot)


PictureStatus = Literal["ok", "unavailable", "unreadable", "timeout"]


class PictureRead(BaseModel):
    """What was read from a picture; a status other than "ok" says why nothing was (`message`)."""

    status: PictureStatus
    text: str = ""
    width: int | None = None
    height: int | None = None
    seconds: float | None = None
    message: str | None = None
