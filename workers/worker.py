"""The worker: builds the clients (Postgres pool, Telegram bot, Calendar service) and registers the
bound activity methods next to the workflows."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence

import asyncpg
from aiogram import Bot
from temporalio.client import Client
from temporalio.worker import Worker

from activities.calendar import CalendarActivities, CalendarService
from activities.llm import LlmActivities
from activities.parsing import ParseActivities
from activities.store import StoreActivities
from activities.telegram import TelegramActivities
from autodispatch.settings import Settings
from workflows.calendar2auto import Calendar2AutoWorkflow
from workflows.main import MainWorkflow

WORKFLOWS: Sequence[type] = (MainWorkflow, Calendar2AutoWorkflow)


def build_activities(pool: asyncpg.Pool, bot: Bot, calendar: CalendarService, settings: Settings) -> list:
    store = StoreActivities(pool)
    telegram = TelegramActivities(bot, pool)
    cal = CalendarActivities(calendar, default_duration_minutes=settings.event_duration_minutes)
    parse = ParseActivities()
    llm = LlmActivities(
        settings.llm_base_url,
        settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        settings.llm_model,
    )
    return [
        store.lookup_driver,
        store.finish_step,
        store.set_open_question,
        telegram.send_reply,
        cal.create_event,
        parse.parse_order,
        llm.parse_with_llm,
    ]


def build_worker(
    client: Client,
    task_queue: str,
    *,
    pool: asyncpg.Pool,
    bot: Bot,
    calendar: CalendarService,
    settings: Settings,
    max_concurrent_activities: int = 64,
    max_cached_workflows: int = 2000,
) -> tuple[Worker, concurrent.futures.ThreadPoolExecutor]:
    """A worker for `task_queue`; the caller owns (and shuts down) the returned thread pool."""
    # google-api-python-client is synchronous: its activity runs on these threads.
    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=max_concurrent_activities, thread_name_prefix="calendar"
    )
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=build_activities(pool, bot, calendar, settings),
        activity_executor=executor,
        max_concurrent_activities=max_concurrent_activities,
        max_cached_workflows=max_cached_workflows,
    )
    return worker, executor
