"""What drivers see about their subscription, per language. Pure: workflows import it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BILLING_TEXTS: dict[str, dict[str, str]] = {
    "ru": {
        "paid": "✅ Оплата получена. Подписка Auto-Dispatcher активна до {until}.",
        "paid_blocked": (
            "Оплата получена (подписка до {until}), но ваш доступ отключён администратором. "
            "Обратитесь к администратору."
        ),
        "warning": (
            "⏳ Подписка Auto-Dispatcher заканчивается {until}. Продлите её командой /subscribe, "
            "чтобы заказы и дальше попадали в календарь."
        ),
        "expired": (
            "Подписка Auto-Dispatcher закончилась {until}: новые заказы не принимаются. "
            "Продлите её командой /subscribe."
        ),
        "invoice_title": "Auto-Dispatcher",
        "invoice_description": "Подписка на {days} дн.: заказы из Telegram сразу в ваш Google Календарь.",
        "invoice_label": "Подписка на {days} дн.",
        "payments_unavailable": "Оплата в Telegram пока не настроена. Обратитесь к администратору.",
        "invoice_failed": "Не удалось выставить счёт ({reason}). Попробуйте позже или обратитесь к администратору.",
        "checkout_invalid": "Этот счёт больше не действует. Отправьте /subscribe, чтобы получить новый.",
        "checkout_unknown_chat": "Этот чат не подключён к Auto-Dispatcher. Обратитесь к администратору.",
        "checkout_unavailable": "Оплата временно недоступна. Попробуйте через минуту.",
    },
    "en": {
        "paid": "✅ Payment received. Your Auto-Dispatcher subscription is active until {until}.",
        "paid_blocked": (
            "Payment received (subscription until {until}), but your access is disabled by your admin. "
            "Please contact your admin."
        ),
        "warning": (
            "⏳ Your Auto-Dispatcher subscription ends {until}. Renew it with /subscribe to keep your "
            "orders going into your calendar."
        ),
        "expired": (
            "Your Auto-Dispatcher subscription ended {until}: new orders are not accepted. "
            "Renew it with /subscribe."
        ),
        "invoice_title": "Auto-Dispatcher",
        "invoice_description": "{days}-day subscription: orders from Telegram straight into your Google Calendar.",
        "invoice_label": "{days}-day subscription",
        "payments_unavailable": "Payments in Telegram are not set up yet. Please contact your admin.",
        "invoice_failed": "Could not send the invoice ({reason}). Try again later or contact your admin.",
        "checkout_invalid": "This invoice is no longer valid. Send /subscribe for a new one.",
        "checkout_unknown_chat": "This chat is not connected to Auto-Dispatcher. Please contact your admin.",
        "checkout_unavailable": "Payments are briefly unavailable. Please try again in a minute.",
    },
}


def bt(lang: str, key: str, **kw: object) -> str:
    return BILLING_TEXTS.get(lang, BILLING_TEXTS["ru"])[key].format(**kw)


def format_until(at: datetime, time_zone: str) -> str:
    """The end of a paid period in the driver's zone, e.g. `21.12.2026 09:30`."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return at.astimezone(zone).strftime("%d.%m.%Y %H:%M")
