"""MainWorkflow with order screenshots: the picture's text after the caption, the card's note, and a
clear answer whenever nothing can be read (no OCR here, a bad picture, a picture without an order)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from autodispatch import texts
from schemas.telegram import PictureRead, ReadPictureInput, TelegramUpdateReceived
from tests.test_workflows import FULL, WORKFLOWS, Fakes, run_main, update


@dataclass
class PictureFakes(Fakes):
    pictures: list[PictureRead | ApplicationError] = field(default_factory=list)
    read: list[ReadPictureInput] = field(default_factory=list)

    def activities(self) -> list:
        @activity.defn(name="read_picture")
        async def read_picture(req: ReadPictureInput) -> PictureRead:
            self.read.append(req)
            answer = self.pictures.pop(0)
            if isinstance(answer, ApplicationError):
                raise answer
            return answer

        return [*super().activities(), read_picture]


def picture(caption: str = "") -> TelegramUpdateReceived:
    upd = update(caption, kind="photo")
    return upd.model_copy(update={"file_id": "AgACfile"})


def worker(client: Client, task_queue: str, fakes: Fakes) -> Worker:
    return Worker(
        client, task_queue=task_queue, workflows=list(WORKFLOWS), activities=fakes.activities(),
        workflow_failure_exception_types=[Exception],
    )  # fmt: skip


async def test_the_picture_text_is_parsed_after_the_caption_and_the_card_says_so(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = PictureFakes(
        parses={"order": FULL}, pictures=[PictureRead(status="ok", text="screen order", seconds=0.3)]
    )
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, picture("от диспетчера"))
    assert result.outcome == "event_created"
    assert fakes.read[0].file_id == "AgACfile"
    assert fakes.events[0].original_text == "от диспетчера\nscreen order"
    card = fakes.replies[-1].text
    assert texts.t("ru", "picture_note") in card and "Внуково → Тверская 7" in card
    row = next(a for a in fakes.audit if a.step == "picture")
    assert row.action == "picture_read" and row.details["text"] == "screen order"


@pytest.mark.parametrize(
    ("answer", "key"),
    [
        (PictureRead(status="unavailable", message="tesseract is not installed"), "picture_unavailable"),
        (PictureRead(status="unreadable", message="not a picture"), "picture_unreadable"),
        (PictureRead(status="timeout", message="30 s"), "picture_unreadable"),
        (ApplicationError("gone", type="TelegramBadRequest", non_retryable=True), "picture_unreadable"),
    ],
)
async def test_a_picture_that_cannot_be_read_gets_a_clear_answer(
    time_skipping_env: WorkflowEnvironment, task_queue: str, answer: PictureRead | ApplicationError, key: str
) -> None:
    fakes = PictureFakes(parses={"order": FULL}, pictures=[answer])
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, picture())
    assert result.outcome == "picture_unreadable" and fakes.events == []
    assert [r.text for r in fakes.replies] == [texts.t("ru", key)]


async def test_without_ocr_the_caption_alone_is_the_order_as_before(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = PictureFakes(parses={"order": FULL}, pictures=[PictureRead(status="unavailable")])
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, picture("order"))
    assert result.outcome == "event_created" and fakes.events[0].original_text == "order"
    assert texts.t("ru", "picture_caption_only") in fakes.replies[-1].text


async def test_a_caption_on_a_picture_without_text_is_the_order_as_it_always_was(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = PictureFakes(parses={"order": FULL}, pictures=[PictureRead(status="ok", text="")])
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, picture("order"))
    assert result.outcome == "event_created" and fakes.events[0].original_text == "order"
    assert "📷" not in fakes.replies[-1].text


async def test_a_picture_without_an_order_says_what_to_send(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = PictureFakes(pictures=[PictureRead(status="ok", text="Привет, как дела")])
    async with worker(time_skipping_env.client, task_queue, fakes):
        result = await run_main(time_skipping_env, task_queue, picture())
    assert result.outcome == "not_an_order" and fakes.events == []
    assert fakes.replies[-1].text == texts.t("ru", "picture_no_order")
