"""Reduce an aiogram Message to the workflow's input."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram.types import Message, Update

from schemas.telegram import MessageKind, TelegramUpdateReceived, outbound_task_queue


def received_from(
    bot_id: int, update: Update, message: Message, kind: MessageKind, text: str
) -> TelegramUpdateReceived:
    sender = message.from_user
    return TelegramUpdateReceived(
        bot_id=bot_id,
        update_id=update.update_id,
        chat_id=message.chat.id,
        message_id=message.message_id,
        text=text,
        kind=kind,
        sender_name=sender.full_name if sender else None,
        language_code=sender.language_code if sender else None,
        # Telegram's own timestamp of the message: "tomorrow" means tomorrow from when it was sent.
        received_at=message.date if message.date else datetime.now(UTC),
        edited=update.edited_message is not None,
        reply_task_queue=outbound_task_queue(bot_id),
    )
