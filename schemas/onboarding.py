"""Onboarding (#6 phase 2): an unknown chat's `/start` → that chat's one OnboardingWorkflow, which walks the
driver through sharing a calendar and whitelists them as `pending`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from schemas.telegram import TelegramUpdateReceived

# What activates a driver who finished onboarding (tenants.onboarding_activation).
Activation = Literal["payment", "approval"]
# What the dialogue waits for: an invite (which fleet?) or the calendar id.
OnboardingStage = Literal["tenant", "calendar"]
OnboardingOutcome = Literal["registered", "already_registered", "gave_up", "cancelled"]
# Why no tenant could be chosen.
TenantProblem = Literal["unknown_code", "no_code", "tenant_disabled"]
RegistrationOutcome = Literal["registered", "already_registered", "tenant_unavailable"]


def onboarding_workflow_id(bot_id: int, chat_id: int) -> str:
    """One dialogue per chat (and bot): every message of the chat lands in the same workflow."""
    return f"onboarding-{bot_id}-{chat_id}"


class RouteMessageInput(BaseModel):
    """A message of a chat that is not on the whitelist, for its OnboardingWorkflow."""

    update: TelegramUpdateReceived
    # /start: start the dialogue if none runs (signal-with-start); anything else only continues one.
    start: bool = False
    task_queue: str


class RouteResult(BaseModel):
    # None: no dialogue runs for the chat and the message was no /start.
    outcome: Literal["onboarding_started", "onboarding_continued"] | None = None


class OnboardingTenant(BaseModel):
    tenant_id: str
    name: str
    activation: Activation = "approval"
    time_zone: str = "Europe/Moscow"


class OnboardingInput(BaseModel):
    """OnboardingWorkflow's input, and its state carried across continue-as-new."""

    bot_id: int
    chat_id: int
    language: str = "ru"
    sender_name: str | None = None
    # Where replies are sent from (the bot's rate-limited outbound queue); None: the workflow's queue.
    reply_task_queue: str | None = None
    # Messages not handled yet: the /start that started it, or what arrived before a continue-as-new.
    inbox: list[TelegramUpdateReceived] = Field(default_factory=list)
    stage: OnboardingStage = "tenant"
    tenant: OnboardingTenant | None = None
    # The e-mail drivers share their calendar with (None: a Calendar endpoint used without credentials).
    service_account: str | None = None
    # Messages handled so far (numbers the audit and reply steps, across continue-as-new).
    handled: int = 0
    nudges: int = 0
    # The driver's last message; silence is counted from here.
    last_heard: datetime | None = None
    # Nudged in the current silence already (one nudge per silence).
    nudged: bool = False
    # Recent update ids: a message handed over twice (a retried routing activity) is handled once.
    seen_updates: list[int] = Field(default_factory=list)


class OnboardingResult(BaseModel):
    outcome: OnboardingOutcome
    tenant_id: str | None = None
    calendar_id: str | None = None
    status: str | None = None  # the driver's whitelist status at the end (pending, or what it already was)


class ResolveTenantInput(BaseModel):
    """Which fleet does a new driver join: the tenant of an invite code, or (code None) the bot's default."""

    code: str | None = None
    # The bot the driver wrote to: a tenant's own bot onboards into that tenant only.
    bot_id: int | None = None


class TenantResolution(BaseModel):
    tenant: OnboardingTenant | None = None
    problem: TenantProblem | None = None
    service_account: str | None = None


class CheckCalendarInput(BaseModel):
    calendar_id: str


class RegisterDriverInput(BaseModel):
    """Whitelist the chat as `pending`, with its audit row (one per workflow step)."""

    tenant_id: str
    chat_id: int
    driver_name: str
    calendar_id: str
    # The calendar's own zone if Google told us one (else the tenant's).
    calendar_time_zone: str | None = None
    workflow_id: str
    step: str
    access_role: str | None = None


class Registration(BaseModel):
    outcome: RegistrationOutcome
    tenant_id: str | None = None
    status: str | None = None
    activation: Activation | None = None
    time_zone: str | None = None
    # The one-time code the driver puts into the calendar's description to prove it is theirs
    # (None: proven already, or a registration recorded before proofs existed).
    calendar_code: str | None = None
