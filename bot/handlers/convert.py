"""Reduce an aiogram Message to the workflow's input."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram.types import CallbackQuery, Message, Update

from schemas.telegram import MessageKind, TelegramUpdateReceived, outbound_task_queue


def received_from(
    bot_id: int, update: Update, message: Message, kind: MessageKind, text: str, file_id: str | None = None
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
        reply_to_message_id=message.reply_to_message.message_id if message.reply_to_message else None,
        forwarded_from=_forwarded_from(message),
        file_id=file_id,
        chat_type=message.chat.type,
    )


def picture_file_id(message: Message) -> str | None:
    """The picture to read: a photo's largest size (Telegram lists them smallest first), or an image sent
    as a file (no compression: the best screenshot there is)."""
    if message.photo:
        return message.photo[-1].file_id
    document = message.document
    if document is not None and (document.mime_type or "").startswith("image/"):
        return document.file_id
    return None


def _forwarded_from(message: Message) -> str | None:
    """The original author of a forwarded order, for the audit log (the text is the order either way)."""
    origin = message.forward_origin
    if origin is None:
        return None
    for attr in ("sender_user", "sender_chat", "chat"):
        who = getattr(origin, attr, None)
        if who is not None:
            return getattr(who, "full_name", None) or getattr(who, "title", None) or str(who.id)
    return getattr(origin, "sender_user_name", None) or origin.type


def received_from_callback(bot_id: int, update: Update, callback: CallbackQuery) -> TelegramUpdateReceived:
    """A button press: the card it was on, the data it carried, and who pressed it."""
    message = callback.message if isinstance(callback.message, Message) else None
    return TelegramUpdateReceived(
        bot_id=bot_id,
        update_id=update.update_id,
        # The presser's private chat: callback data is checked against this chat's own orders.
        chat_id=message.chat.id if message else callback.from_user.id,
        message_id=message.message_id if message else None,
        text=(message.text or "") if message else "",
        kind="callback",
        sender_name=callback.from_user.full_name,
        language_code=callback.from_user.language_code,
        received_at=message.date if message and message.date else datetime.now(UTC),
        callback_data=callback.data,
        callback_query_id=callback.id,
        reply_task_queue=outbound_task_queue(bot_id),
        chat_type=message.chat.type if message else "private",
    )
