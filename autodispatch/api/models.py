"""Request and response bodies of /api/v1: validation, serialisation and the OpenAPI schemas in one place."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autodispatch.admin import check_time_zone
from autodispatch.api.auth import Role
from autodispatch.tenants import check_currency, check_name
from schemas.telegram import INT64_MAX, INT64_MIN

DriverStatus = Literal["active", "pending", "disabled"]


class _Request(BaseModel):
    # An unknown field is a typo the caller wants to hear about, not something to drop silently.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _zone(v: str | None) -> str | None:
    return None if v is None else check_time_zone(v)


# -- errors -----------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable: unauthenticated, forbidden, not_found, …")
    message: str = Field(description="what went wrong, for a person")


class Error(BaseModel):
    error: ErrorDetail


class OpenApiDocument(BaseModel):
    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


# -- who am I ---------------------------------------------------------------------------
class Me(BaseModel):
    role: Role
    tenant_id: str
    subject: str
    via: Literal["jwt", "api_key"]
    chat_id: int | None = None
    key_id: str | None = None


# -- tenants ----------------------------------------------------------------------------
class Tenant(BaseModel):
    tenant_id: str
    name: str
    time_zone: str
    currency: str | None
    dedicated: bool
    task_queue: str = Field(description="the Temporal task queue the tenant's orders run on")
    status: Literal["active", "disabled"]
    created_at: datetime


class TenantList(BaseModel):
    items: list[Tenant]


class TenantCreate(_Request):
    name: str = Field(min_length=1, max_length=200, description="unique; the id is derived from it")
    dedicated: bool = Field(default=False, description="own task queue tenant-<id> and workers")
    time_zone: str | None = Field(default=None, description="IANA zone; default: the server's")
    currency: str | None = Field(default=None, description="ISO 4217 code, e.g. RUB")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return _zone(v)

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str | None) -> str | None:
        return check_currency(v)


class TenantCreated(Tenant):
    api_key: str = Field(description="the tenant's first admin API key: shown this once, stored hashed")
    key_id: str


class TenantUpdate(_Request):
    time_zone: str | None = Field(default=None, description="IANA zone (admin)")
    currency: str | None = Field(default=None, description="ISO 4217 code (admin)")
    status: Literal["active", "disabled"] | None = Field(default=None, description="system only")

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return _zone(v)

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str | None) -> str | None:
        return check_currency(v)


# -- drivers ----------------------------------------------------------------------------
class Driver(BaseModel):
    tenant_id: str
    chat_id: int
    driver_name: str
    calendar_id: str
    time_zone: str
    status: DriverStatus
    created_at: datetime
    updated_at: datetime
    calendar_proof: str | None = Field(
        default=None,
        description="how the driver proved the calendar is theirs (description, oauth, owner, legacy); "
        "null: not yet, the bot neither reads nor writes it",
    )
    calendar_code: str | None = Field(
        default=None,
        description="while unproven: the one-time code the driver puts into the calendar's description "
        "(the bot tells them how); every change of calendar_id issues a new one",
    )


class DriverList(BaseModel):
    items: list[Driver]


class DriverCreate(_Request):
    chat_id: int = Field(description="the driver's Telegram chat id", ge=INT64_MIN, le=INT64_MAX)
    driver_name: str = Field(min_length=1, max_length=200)
    calendar_id: str = Field(min_length=1, max_length=400, description="the Google Calendar shared with us")
    time_zone: str | None = Field(default=None, description="IANA zone; default: the tenant's")
    status: DriverStatus = "active"

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return _zone(v)


class DriverUpdate(_Request):
    driver_name: str | None = Field(
        default=None, min_length=1, max_length=200, description="admin or the driver"
    )
    time_zone: str | None = Field(default=None, description="admin or the driver")
    calendar_id: str | None = Field(default=None, min_length=1, max_length=400, description="admin")
    status: DriverStatus | None = Field(default=None, description="admin")

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return _zone(v)


class DriverApproval(Driver):
    changed: bool = Field(description="false: the driver was active already (nothing changed)")
    calendar_check: str | None = Field(
        description="what the calendar check found (`ok`), `skipped` (verify=false), or null if unchanged"
    )


class DriverApproveQuery(_Request):
    verify: bool = Field(
        default=True,
        description="check first that the bot can read and write the driver's calendar (a probe event is "
        "written and deleted); false approves without the check (audited as skipped)",
    )


# -- onboarding (#6 phase 2) ------------------------------------------------------------
class TenantOnboarding(BaseModel):
    tenant_id: str
    activation: Literal["payment", "approval"] = Field(
        description="what activates a driver who finished the onboarding dialogue: an admin's approve, "
        "or their payment"
    )
    invite_code: str | None = Field(description="the deep link's payload; null: invitations are closed")
    start_command: str | None = Field(description="what the driver's Telegram sends: /start <code>")
    deep_link: str | None = Field(
        description="https://t.me/<bot>?start=<code> (null unless AUTODISPATCH_TELEGRAM_BOT_USERNAME is set)"
    )
    default_tenant: bool = Field(
        description="this is AUTODISPATCH_ONBOARDING_DEFAULT_TENANT: a bare /start joins it"
    )


class TenantOnboardingUpdate(_Request):
    activation: Literal["payment", "approval"] | None = None
    invite: Literal["rotate", "close"] | None = Field(
        default=None,
        description="rotate: a new code (links handed out before stop working); close: no invitations",
    )


# -- orders -----------------------------------------------------------------------------
class Order(BaseModel):
    tenant_id: str
    order_id: str
    chat_id: int
    workflow_id: str
    status: str
    pickup_at: datetime | None
    pickup_address: str | None
    dropoff_address: str | None
    price_amount: Decimal | None
    price_currency: str | None
    client_name: str | None
    client_phone: str | None
    flight_number: str | None
    calendar_id: str | None
    event_id: str | None
    html_link: str | None
    original_text: str
    created_at: datetime
    updated_at: datetime


class OrderList(BaseModel):
    items: list[Order]


class OrderQuery(_Request):
    chat_id: int | None = Field(
        default=None,
        description="one driver's orders (a `user` sees only their own)",
        ge=INT64_MIN,
        le=INT64_MAX,
    )
    status: str | None = Field(default=None, max_length=40)
    limit: int = Field(default=100, ge=1, le=500)


# -- API keys ---------------------------------------------------------------------------
class ApiKey(BaseModel):
    tenant_id: str
    key_id: str
    prefix: str = Field(description="the key's first characters, to recognise it")
    role: Role
    name: str
    chat_id: int | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyList(BaseModel):
    items: list[ApiKey]


class ApiKeyCreate(_Request):
    role: Role = "viewer"
    name: str = Field(default="", max_length=200)
    chat_id: int | None = Field(
        default=None, description="required for role `user`: the driver", ge=INT64_MIN, le=INT64_MAX
    )


# -- the tenant's own Telegram bots (docs/bots.md) --------------------------------------
class TenantBot(BaseModel):
    bot_id: int = Field(description="Telegram's id of the bot")
    tenant_id: str
    username: str
    status: Literal["active", "paused"] = Field(
        description="paused: Telegram refused the token (revoked in @BotFather); register the new token"
    )
    paused_reason: str | None
    paused_at: datetime | None
    webhook_path: str = Field(description="where Telegram delivers the bot's updates (webhook mode)")
    link: str = Field(description="https://t.me/<bot>: the bot drivers talk to")
    created_at: datetime


class TenantBotList(BaseModel):
    items: list[TenantBot]


class TenantBotCreate(_Request):
    token: str = Field(
        min_length=3, max_length=200,
        description="the token from @BotFather; checked with getMe, stored encrypted, never shown again",
    )  # fmt: skip


class ApiKeyCreated(ApiKey):
    api_key: str = Field(description="the key: shown this once, stored hashed")


# -- audit ------------------------------------------------------------------------------
class AuditEntry(BaseModel):
    tenant_id: str
    id: int
    at: datetime
    workflow_id: str
    step: str
    action: str
    chat_id: int | None
    order_id: str | None
    outcome: str
    details: dict[str, Any]


class AuditList(BaseModel):
    items: list[AuditEntry]


class AuditQuery(_Request):
    tenant: str | None = Field(default=None, description="tenant id or name")
    workflow_id: str | None = None
    limit: int = Field(default=200, ge=1, le=1000)
