"""Inputs and results of the OAuth steps (#6 phase 4): the /connect link, paused orders, reconnects."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from schemas.calendar import Calendar2AutoInput


class ConnectLinkInput(BaseModel):
    """/connect: a consent link for this driver's chat, signed for it and valid for 10 minutes."""

    tenant_id: str
    chat_id: int
    workflow_id: str
    language: str = "ru"


class DisconnectGrantInput(BaseModel):
    tenant_id: str
    chat_id: int


class DisconnectGrantResult(BaseModel):
    configured: bool = True  # False: OAuth is not set up on this deployment
    had_grant: bool = False
    google: str = ""  # what Google's revoke endpoint answered


class ConnectLink(BaseModel):
    url: str | None = None  # None: OAuth is not configured on this deployment
    nonce: str | None = None  # names the link in the audit log (workflow id oauth-<nonce>)
    expires_at: datetime | None = None


class PauseOrderInput(BaseModel):
    """An order whose calendar write found the driver's grant revoked: kept whole until they reconnect."""

    tenant_id: str
    chat_id: int
    order_id: str
    workflow_id: str
    calendar: Calendar2AutoInput
    reply_to_message_id: int | None = None
    reply_task_queue: str | None = None


class CalendarConnected(BaseModel):
    """CalendarConnectedWorkflow's input: the callback stored a grant for this chat."""

    tenant_id: str
    chat_id: int
    nonce: str
    account_email: str | None = None
    language: str = "ru"
    reply_task_queue: str | None = None
    calendar_task_queue: str | None = None  # a dedicated tenant's queue; None: the flow's own


class ClaimPausedInput(BaseModel):
    tenant_id: str
    chat_id: int
    workflow_id: str  # the resuming workflow: claims are idempotent for it


class PausedOrder(BaseModel):
    order_id: str
    workflow_id: str  # the MainWorkflow that paused it (the order row keeps it)
    calendar: Calendar2AutoInput
    reply_to_message_id: int | None = None
    reply_task_queue: str | None = None


class PausedOrders(BaseModel):
    orders: list[PausedOrder] = []


class ReleasePausedInput(BaseModel):
    """After a resume attempt: `done` marks the order resumed; otherwise it is paused again."""

    tenant_id: str
    order_id: str
    workflow_id: str
    done: bool


class ConnectedResult(BaseModel):
    resumed: list[str] = []
    failed: list[str] = []
    still_paused: list[str] = []
