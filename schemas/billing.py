"""Billing: who a payment is for, what it pays, and the subscription it extends."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr

from schemas.audit import AuditEntry

Provider = Literal["stripe", "telegram"]
SubscriptionStatus = Literal["new", "active", "expired"]
ChangeAction = Literal["activate", "warn", "expire"]

# Telegram invoice payloads (set by us, ≤ 128 bytes): sub:<tenant_id>:<chat_id>:<period days>.
_INVOICE_PAYLOAD = re.compile(r"^sub:([a-z0-9][a-z0-9_-]{0,62}):(-?\d{1,20}):(\d{1,4})$")
CURRENCIES_WITHOUT_PROVIDER = frozenset({"XTR"})  # Telegram Stars need no payment provider


class BillingSettings(BaseModel):
    """The billing part of Settings (AUTODISPATCH_BILLING_*, AUTODISPATCH_TELEGRAM_PAYMENTS_*)."""

    webhook_secret: SecretStr | None = None
    period_days: int = Field(default=30, ge=1, le=3660)
    provider_token: SecretStr | None = None
    # The invoice price in the currency's smallest unit (kopecks, cents; whole stars for XTR).
    price_minor: int | None = Field(default=None, gt=0)
    currency: str = "RUB"
    # The provider's product a webhook payment must be for (Stripe `prod_…`).
    product_id: str | None = None

    def payment_problem(
        self, amount: int | None, currency: str | None, products: set[str] | None = None
    ) -> str | None:
        """None when a payment is one period of ours: the configured price, currency and (for the
        provider's webhook, `products` given) product; else why it activates nothing."""
        if self.price_minor is None:
            return "no price is configured (AUTODISPATCH_BILLING_PRICE_MINOR)"
        if (currency or "").upper() != self.currency.upper():
            return f"currency {currency!r} is not {self.currency}"
        if amount != self.price_minor:
            return f"amount {amount!r} is not the price {self.price_minor} {self.currency}"
        if products is not None:
            if self.product_id is None:
                return "no product is configured (AUTODISPATCH_BILLING_PRODUCT_ID)"
            if self.product_id not in products:
                named = ", ".join(sorted(products)) or "none"
                return f"not for product {self.product_id} (products named: {named})"
        return None

    @property
    def invoices_enabled(self) -> bool:
        """Telegram invoices need a price, and a provider token unless paid in Stars."""
        return self.price_minor is not None and (
            self.provider_token is not None or self.currency in CURRENCIES_WITHOUT_PROVIDER
        )


def billing_settings(settings: Any) -> BillingSettings:
    """BillingSettings from the application Settings. getattr with defaults: the fields are being added to
    Settings (billing_webhook_secret, billing_period_days, telegram_payments_provider_token,
    billing_price_minor, billing_currency); until then they read as unset."""
    return BillingSettings(
        webhook_secret=getattr(settings, "billing_webhook_secret", None),
        period_days=getattr(settings, "billing_period_days", 30),
        provider_token=getattr(settings, "telegram_payments_provider_token", None),
        price_minor=getattr(settings, "billing_price_minor", None),
        currency=getattr(settings, "billing_currency", "RUB"),
        product_id=getattr(settings, "billing_product_id", None),
    )


class Subscriber(BaseModel):
    """Whom a payment is for: one driver, or (chat_id None) a whole tenant."""

    tenant_id: str
    chat_id: int | None = None

    @property
    def label(self) -> str:
        return f"{self.tenant_id}:{self.chat_id}" if self.chat_id is not None else self.tenant_id


def subscription_workflow_id(tenant_id: str, chat_id: int | None) -> str:
    """One SubscriptionWorkflow per driver (or per tenant): every payment for it lands in the same one."""
    return f"subscription-{tenant_id}-{chat_id if chat_id is not None else 'tenant'}"


def invoice_payload(tenant_id: str, chat_id: int, period_days: int) -> str:
    return f"sub:{tenant_id}:{chat_id}:{period_days}"


def parse_invoice_payload(payload: str) -> tuple[Subscriber, int] | None:
    """(subscriber, period days) from one of our invoice payloads; None for anything else."""
    m = _INVOICE_PAYLOAD.match(payload or "")
    if m is None or not 1 <= int(m.group(3)) <= 3660 or not -(2**63) <= int(m.group(2)) < 2**63:
        return None
    return Subscriber(tenant_id=m.group(1), chat_id=int(m.group(2))), int(m.group(3))


class PaymentReceived(BaseModel):
    """Signal `payment_received`: one paid checkout, invoice or Telegram payment."""

    # Stable per payment (a checkout session, an invoice, a Telegram charge): the workflow applies each once.
    payment_id: str
    provider: Provider
    paid_at: datetime
    # Relative: extends the paid period by this many days (from its end, or from now if it has lapsed).
    period_days: int = 30
    # Absolute: the paid period ends here (a Stripe invoice line's period); wins over period_days.
    period_end: datetime | None = None
    amount: int | None = None
    currency: str | None = None
    language: str | None = None
    # Where notices are sent from (the bot's rate-limited outbound queue); None: the workflow's queue.
    reply_task_queue: str | None = None


class SubscriptionInput(BaseModel):
    """SubscriptionWorkflow's input, and its state carried across continue-as-new."""

    tenant_id: str
    chat_id: int | None = None
    status: SubscriptionStatus = "new"
    paid_until: datetime | None = None
    # The paid_until a warning was already sent for (one warning per period).
    warned_for: datetime | None = None
    # Recent payment ids, so a payment signalled twice is applied once.
    seen_payments: list[str] = Field(default_factory=list)
    language: str = "ru"
    reply_task_queue: str | None = None


class SubscriptionChange(BaseModel):
    """One transition, applied in one transaction with its audit row (unique per workflow step)."""

    tenant_id: str
    chat_id: int | None = None
    workflow_id: str
    step: str
    action: ChangeAction
    paid_until: datetime
    payment_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class SubscriptionChangeResult(BaseModel):
    # The driver's (or tenant's) status after the change.
    status: str | None = None
    # The driver was removed from the whitelist (or the tenant is gone): nothing to change or tell.
    missing: bool = False
    # Paid, but an admin disabled the driver: the payment is recorded, access stays off.
    blocked_by_admin: bool = False
    # Paid, but the driver is pending and the fleet approves new drivers itself: access waits for it.
    awaiting_approval: bool = False
    notify_chat_ids: list[int] = Field(default_factory=list)
    time_zone: str = "Europe/Moscow"


class BillingAuditInput(BaseModel):
    entries: list[AuditEntry]


class SendInvoiceInput(BaseModel):
    """An invoice through the outbox: (workflow_id, step) is sent at most once."""

    tenant_id: str
    workflow_id: str
    step: str
    chat_id: int
    language: str = "ru"
    # The bot the driver asked (/subscribe) through: a fleet's own bot sends its own invoice.
    bot_id: int | None = None


class InvoiceSent(BaseModel):
    message_id: int | None = None
    already_sent: bool = False
    amount: int = 0
    currency: str = ""
