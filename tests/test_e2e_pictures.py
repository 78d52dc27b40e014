"""Order screenshots end to end: the Telegram emulator's user side posts a photo (and an image sent as
a file), the bot fetches it with getFile like from Telegram, Tesseract reads it, and the driver's
calendar gets the event with the parsed fields; the card says it was read from a picture. Real stack,
real clients; nothing of ours is mocked."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from autodispatch import admin, texts
from autodispatch.embedded import EmbeddedTemporal
from emulators.screenshots import render_png
from schemas.telegram import main_workflow_id
from tests.conftest import Outside, Postgres, stack_settings
from tests.test_e2e import events_of, finished, new_driver, replies, running, token_of

pytestmark = pytest.mark.e2e
MSK = ZoneInfo("Europe/Moscow")
ORDER = "Заказ на завтра в 08:15\nОткуда: Внуково, рейс SU 1103\nКуда: ул. Остоженка 25\nКлиент: Роман +7 903 765-43-21\nЦена: 2700 руб"


async def test_a_screenshot_becomes_an_event_with_its_fields_and_a_card_that_says_so(
    tmp_path: Path, postgres: Postgres, temporal_dev: EmbeddedTemporal, outside: Outside
) -> None:
    async with running(stack_settings(tmp_path, postgres, temporal_dev, outside)) as stack:
        chat_id, calendar_id, tenant = await new_driver(stack, outside)
        token, user = token_of(stack), {"id": chat_id, "first_name": "Ivan", "language_code": "ru"}
        before = outside.telegram.stats()["methods"].get("getFile", 0)
        async with httpx.AsyncClient() as http:  # the user's side over the control API, as another process
            r = await http.post(
                f"{outside.telegram.base_url}/_emulator/bots/{token}/messages",
                json={
                    "chat_id": chat_id, "from": user,
                    "photo_base64": base64.b64encode(render_png(ORDER, "card")).decode(),
                },
            )  # fmt: skip
            r.raise_for_status()
            photo = r.json()
        result = await finished(stack, photo["update_id"])
        assert result.outcome == "event_created"
        assert outside.telegram.stats()["methods"]["getFile"] > before  # fetched as from Telegram

        (event,) = await events_of(outside, calendar_id)
        tomorrow = datetime.now(MSK).date() + timedelta(days=1)
        assert event["start"]["dateTime"].startswith(f"{tomorrow:%Y-%m-%d}T08:15")
        assert "Внуково" in event["location"] and "Остоженка" in event["summary"]
        assert "+79037654321" in event["description"] and "SU1103" in event["description"].replace(" ", "")
        assert "2 700 ₽" in event["description"]
        (card,) = replies(outside, stack, chat_id)
        assert card["reply_to_message_id"] == photo["message_id"]
        assert texts.t("ru", "picture_note") in card["text"] and "Остоженка" in card["text"]

        # An image sent as a file, dark mode, with a caption that is read with it.
        dark = "послезавтра 14:20 Шереметьево B → Долгопрудный, 1800 руб, 3 пасс"
        document = outside.telegram.user_sends(
            token, chat_id, None, from_user=user, caption="Света +7 916 111-22-33",
            document={"data": render_png(dark, "dark"), "file_name": "order.png", "mime_type": "image/png"},
        )  # fmt: skip
        assert (await finished(stack, document["update_id"])).outcome == "event_created"
        events = await events_of(outside, calendar_id)
        second = next(e for e in events if e["id"] != event["id"])
        assert "Шереметьево" in second["summary"] and "Долгопрудный" in second["summary"]
        assert "+79161112233" in second["description"]  # from the caption

        # A photo with nothing to read: a clear answer, no event.
        blank = outside.telegram.user_sends(token, chat_id, None, photo=True, from_user=user)
        assert (await finished(stack, blank["update_id"])).outcome == "not_an_order"
        assert replies(outside, stack, chat_id)[-1]["text"] == texts.t("ru", "picture_no_order")
        assert len(await events_of(outside, calendar_id)) == 2

        assert stack.pool is not None and stack.bot is not None
        wf_id = main_workflow_id(stack.bot.id, photo["update_id"])
        audit = await admin.read_audit(stack.pool, tenant=tenant, workflow_id=wf_id)
        steps = [r["step"] for r in audit]
        assert steps[:3] == ["received", "whitelist", "picture"] and steps[-1] == "outcome"
        assert "Остоженка" in audit[2]["details"]["text"]
