"""Order screenshots: a photo, or an image sent as a file, with or without a caption. The edge only
hands over the picture's file id; the flow fetches and reads it (OCR is no work for the edge)."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.types import Message, Update

from bot.edge import TemporalEdge
from bot.handlers.convert import picture_file_id, received_from


async def on_picture(message: Message, event_update: Update, bot: Bot, edge: TemporalEdge) -> None:
    received = received_from(
        bot.id, event_update, message, "photo", message.caption or "", file_id=picture_file_id(message)
    )
    await edge.hand_over(received)


def build_router() -> Router:
    router = Router(name="pictures")
    image_document = F.document.mime_type.startswith("image/")
    for observer in (router.message, router.edited_message):
        observer.register(on_picture, F.photo)
        observer.register(on_picture, image_document)
    return router
