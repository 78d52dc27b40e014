"""The worker: builds the clients (Postgres pool, Telegram bot, Calendar service) and registers the
bound activity methods next to the workflows."""

from __future__ import annotations

import asyncio
import compileall
import concurrent.futures
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiogram import Bot
from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.billing import BillingActivities
from activities.calendar import CalendarActivities, CalendarService
from activities.calendar_proof import CalendarOwnership
from activities.llm import LlmActivities
from activities.oauth import OAuthActivities, OAuthGrants
from activities.onboarding import OnboardingActivities, OnboardingRouter
from activities.orders import OrderStarter
from activities.parsing import ParseActivities
from activities.pictures import PictureActivities
from activities.retention import RetentionActivities
from activities.store import StoreActivities
from activities.telegram import Revoked, SendPacer, TelegramActivities
from autodispatch.bots import BotDirectory
from autodispatch.settings import Settings
from bot.dispatcher import api_base_of, make_bot
from parsing import ocr
from schemas.billing import billing_settings
from schemas.telegram import outbound_task_queue
from workers.context import WorkContextInterceptor
from workers.day import DAY_WORKFLOWS, day_activities
from workflows.calendar2auto import Calendar2AutoWorkflow
from workflows.main import MainWorkflow
from workflows.oauth import CalendarConnectedWorkflow
from workflows.onboarding import OnboardingWorkflow
from workflows.order import OrderWorkflow
from workflows.retention import RetentionWorkflow
from workflows.subscription import InvoiceWorkflow, SubscriptionWorkflow

log = logging.getLogger(__name__)

WORKFLOWS: Sequence[type] = (
    MainWorkflow,
    Calendar2AutoWorkflow,
    OrderWorkflow,
    SubscriptionWorkflow,
    InvoiceWorkflow,
    OnboardingWorkflow,  # #6 phase 2: the new driver's dialogue
    CalendarConnectedWorkflow,  # #6 phase 4: after /connect, resume orders paused on a revoked grant
    RetentionWorkflow,  # old audit rows and sent replies deleted, daily
)
WORKFLOWS = (*WORKFLOWS, *DAY_WORKFLOWS)  # the driver's day (#5): agenda, settings


def build_activities(pool: asyncpg.Pool, bot: Bot, calendar: CalendarService, settings: Settings) -> list:
    store = StoreActivities(pool, CalendarOwnership(pool, calendar))
    telegram = TelegramActivities(bot, pool)
    if calendar.grants is None and settings.oauth_configured:
        # Drivers who connected their own calendar with /connect are written with their own grant.
        calendar.grants = OAuthGrants(pool, settings)
    oauth_steps = OAuthActivities(pool, calendar.grants)
    cal = CalendarActivities(calendar, default_duration_minutes=settings.event_duration_minutes)
    parse = ParseActivities()
    api_base = api_base_of(bot)
    fleet_bots = BotDirectory(pool, settings, lambda token: make_bot(token, api_base))
    pictures = PictureActivities(bot, bots=fleet_bots)
    llm = LlmActivities(
        settings.llm_base_url,
        settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        settings.llm_model,
    )
    billing = BillingActivities(pool, bot, billing_settings(settings), bots=fleet_bots)
    onboarding = OnboardingActivities(pool, calendar, settings.onboarding_default_tenant)
    return [
        billing.apply_change,
        billing.record_audit,
        billing.send_invoice,
        onboarding.resolve_tenant,
        onboarding.check_calendar,
        onboarding.register_driver,
        OnboardingRouter().route_message,
        store.lookup_driver,
        store.finish_step,
        store.set_open_question,
        store.authorize_order,
        store.set_order_status,
        store.find_orders,
        telegram.send_reply,
        telegram.answer_callback,
        telegram.edit_card,
        cal.create_event,
        cal.cancel_event,
        oauth_steps.create_connect_link,
        oauth_steps.disconnect_grant,
        oauth_steps.pause_order,
        oauth_steps.claim_paused_orders,
        oauth_steps.release_paused_order,
        cal.update_event,
        parse.parse_order,
        parse.parse_message,
        pictures.read_picture,
        OrderStarter().start_order_workflow,
        llm.parse_with_llm,
        RetentionActivities(pool, settings).apply_retention,
    ]


@dataclass
class Workers:
    """The workers of one process and the thread pool their synchronous activities run on."""

    workers: list[Worker]
    executor: concurrent.futures.ThreadPoolExecutor

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.workers))

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers))
        self.executor.shutdown(wait=False, cancel_futures=True)


PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What the workflow sandbox imports afresh for every new workflow run (the rest is passed through).
SANDBOX_PACKAGES = ("workflows", "schemas", "activities", "autodispatch", "parsing")


def ensure_bytecode(package_dirs: Iterable[Path]) -> int:
    """Write the bytecode of these packages if it is missing or stale; returns how many are readable.

    The sandbox imports the workflow modules anew for every workflow run, three per order. Where
    bytecode is never written (`PYTHONDONTWRITEBYTECODE=1`, common in containers and on these
    machines) each of those imports compiled the modules from source: about a quarter of the worker's
    CPU in the benchmark profile (BENCHMARKS.md). A read-only install (a wheel, compiled by pip) is
    left as it is."""
    done = 0
    for directory in package_dirs:
        if directory.is_dir() and os.access(directory, os.W_OK):
            done += int(bool(compileall.compile_dir(directory, quiet=2, workers=1)))
    return done


def workflow_runner(sandbox: str) -> SandboxedWorkflowRunner:
    """The SDK's sandbox, with the project's own packages imported once per process if asked.

    Passing them through keeps the sandbox's isolation of everything else but skips re-executing
    our modules for every workflow run; their module state is constants only (no workflow writes it)."""
    if sandbox == "strict":
        return SandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PACKAGES)
    )


def build_workers(
    client: Client,
    task_queue: str,
    *,
    pool: asyncpg.Pool,
    bot: Bot,
    calendar: CalendarService,
    settings: Settings,
    serve_outbound: bool = True,
    max_concurrent_activities: int = 64,
    max_cached_workflows: int = 2000,
    flow_workflow_task_slots: int = 8,
    flow_local_activity_slots: int = 8,
    flow_activity_slots: int = 16,
) -> Workers:
    """The flow worker for `task_queue` and (unless a dedicated tenant's worker) the Telegram outbound one.

    The flow worker's slots are few on purpose: a worker that takes every task the server offers moves
    the backlog into its own first-come queues, where the server's per-tenant fairness no longer
    applies. With few slots the backlog stays on the server, and a quiet tenant's tasks go ahead of a
    flooding one's (noisy-neighbour: the quiet tenant's p99 during a flood 13.9 s → 3.8 s, the flood's
    throughput unchanged; BENCHMARKS.md). The outbound worker keeps many slots: its sends wait in the
    per-chat pacer, and few slots would queue every chat behind one busy chat.
    """
    ensure_bytecode(PROJECT_ROOT / name for name in SANDBOX_PACKAGES)
    reader = ocr.availability()
    if reader.ok:
        log.info("order screenshots: %s", reader.message)
    else:  # pictures get a clear "send it as text" (or their caption is read), never a failure
        log.warning("order screenshots are not read: %s", reader.message)
    # google-api-python-client is synchronous: its activity runs on these threads, one per slot, so a
    # slow Calendar call never starves the slots (idle threads are cheap).
    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=flow_activity_slots, thread_name_prefix="calendar"
    )
    activities = build_activities(pool, bot, calendar, settings)
    activities += day_activities(client, pool, bot, calendar, settings)
    interceptors = [WorkContextInterceptor()]  # tenant/workflow/order of each activity: metrics, logs
    workers = [
        Worker(
            client,
            task_queue=task_queue,
            workflows=list(WORKFLOWS),
            workflow_runner=workflow_runner(settings.workflow_sandbox),
            activities=activities,
            activity_executor=executor,
            max_concurrent_activities=flow_activity_slots,
            max_concurrent_workflow_tasks=flow_workflow_task_slots,
            max_concurrent_local_activities=flow_local_activity_slots,
            max_cached_workflows=max_cached_workflows,
            # Twice the SDK's 5 pollers: new orders and child workflows start on the normal queue,
            # which gets 2 of them at the default 0.2 ratio (the rest serve the sticky queue). A larger
            # ratio was tried: it favours new starts over orders in progress and made the noisy-
            # neighbour flood slower and the quiet tenant's p99 worse (BENCHMARKS.md, tuning log).
            workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(10),
            activity_task_poller_behavior=PollerBehaviorSimpleMaximum(10),
            interceptors=interceptors,
        )
    ]
    if serve_outbound:
        workers.append(outbound_worker(client, bot, pool, settings, max_concurrent_activities))
    return Workers(workers, executor)


def outbound_worker(
    client: Client,
    bot: Bot,
    pool: asyncpg.Pool,
    settings: Settings,
    max_concurrent_activities: int = 64,
    revoked: Revoked | None = None,
) -> Worker:
    """Every message of one bot to Telegram goes through its queue: the server enforces the bot's budget
    (30 messages/s) across all workers, so no process can exceed it, and each bot has its own (a flood
    on one bot never spends another's). The pacer is the bot's too."""
    pacer = SendPacer(settings.telegram_messages_per_second, settings.telegram_per_chat_interval)
    telegram = TelegramActivities(bot, pool, pacer, revoked)
    return Worker(
        client,
        task_queue=outbound_task_queue(bot.id),
        activities=[telegram.send_reply, telegram.answer_callback, telegram.edit_card],
        max_task_queue_activities_per_second=settings.telegram_messages_per_second,
        max_concurrent_activities=max_concurrent_activities,
        interceptors=[WorkContextInterceptor()],
    )
