"""Every text the driver sees, one place per language. Pure: workflows import it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from schemas.order import ParsedOrder

CURRENCY_SIGNS = {"RUB": "₽", "USD": "$", "EUR": "€", "GBP": "£", "KZT": "₸", "UAH": "₴", "TRY": "₺"}
CANCEL_WORDS = {"отмена", "отменить", "cancel", "stop", "стоп", "нет", "no"}

TEXTS: dict[str, dict[str, str]] = {
    "ru": {
        "unknown_chat": (
            "Этот чат не подключён к Auto-Dispatcher.\nПередайте администратору ваш chat id: {chat_id}"
        ),
        "driver_disabled": "Ваш доступ к Auto-Dispatcher отключён. Обратитесь к администратору.",
        "driver_pending": "Ваша регистрация ожидает подтверждения. Заказы пока не принимаются.",
        "help": (
            "Перешлите мне текст заказа, например:\n"
            "«завтра 9:30 Внуково → Тверская 7, 2500₽, Анна +7 916 123-45-67»\n"
            "Я добавлю его в ваш Google Календарь и пришлю подтверждение."
        ),
        "send_text": "Я понимаю только текст заказа. Пришлите его сообщением.",
        "ask_pickup_at": "Не понял время подачи. Когда подать машину? (например «завтра 9:30»)\nОтветьте «отмена», чтобы отменить.",
        "ask_pickup_address": "Не понял адрес подачи. Откуда забрать клиента?\nОтветьте «отмена», чтобы отменить.",
        "cancelled": "Заказ отменён, в календарь ничего не записано.",
        "no_answer": "Не дождался ответа — заказ не записан. Пришлите его ещё раз целиком.",
        "calendar_not_found": (
            "Не могу записать заказ: календарь «{calendar_id}» не найден или не открыт для бота.\n"
            "Откройте доступ к календарю для сервисного аккаунта с правом «Внесение изменений "
            "и управление доступом» или обратитесь к администратору. Заказ сохранён."
        ),
        "calendar_read_only": (
            "Не могу записать заказ: календарь «{calendar_id}» открыт только для чтения.\n"
            "Дайте боту право «Внесение изменений в мероприятия». Заказ сохранён."
        ),
        "calendar_failed": "Не удалось записать заказ в календарь ({reason}). Заказ сохранён, администратор уведомлён.",
        "confirmed_title": "✅ Заказ в календаре",
        "label_price": "💰",
        "label_client": "👤",
        "label_flight": "✈️ рейс",
        "label_passengers": "пасс.",
        "label_notes": "📝",
        "open_event": "Открыть в календаре",
        "cancel_button": "❌ Отменить заказ",
        "card_cancelled": "❌ Заказ отменён, событие удалено из календаря.",
        "order_cancelled": "Заказ отменён",
        "already_cancelled": "Заказ уже отменён",
        "not_your_order": "Это не ваш заказ.",
        "unknown_button": "Эта кнопка устарела.",
        "event_price": "Цена",
        "event_client": "Клиент",
        "event_phone": "Телефон",
        "event_flight": "Рейс",
        "event_passengers": "Пассажиров",
        "event_notes": "Примечания",
        "event_original": "Исходный текст",
        # -- ru: driver's day (#5)
        # -- ru: onboarding (#6 phase 2)
        # -- ru: oauth (#6 phase 4)
    },
    "en": {
        "unknown_chat": (
            "This chat is not connected to Auto-Dispatcher.\nGive your admin this chat id: {chat_id}"
        ),
        "driver_disabled": "Your Auto-Dispatcher access is disabled. Please contact your admin.",
        "driver_pending": "Your registration is waiting for approval. Orders are not accepted yet.",
        "help": (
            "Forward me an order text, for example:\n"
            "“tomorrow 9:30 am JFK → 5th Ave 700, $90, Anna +1 212 555 0100”\n"
            "I will add it to your Google Calendar and confirm."
        ),
        "send_text": "I only understand order texts. Please send it as a text message.",
        "ask_pickup_at": "I could not read the pickup time. When is the pickup? (e.g. “tomorrow 9:30”)\nReply “cancel” to drop it.",
        "ask_pickup_address": "I could not read the pickup address. Where do you pick the client up?\nReply “cancel” to drop it.",
        "cancelled": "Order cancelled; nothing was written to your calendar.",
        "no_answer": "No answer received, the order was not saved. Please send it again in full.",
        "calendar_not_found": (
            "I can't write the order: calendar “{calendar_id}” was not found or is not shared with the bot.\n"
            "Share it with the service account with “Make changes to events”, or contact your admin. "
            "The order is kept."
        ),
        "calendar_read_only": (
            "I can't write the order: calendar “{calendar_id}” is shared read-only.\n"
            "Give the bot “Make changes to events”. The order is kept."
        ),
        "calendar_failed": "Could not write the order to your calendar ({reason}). The order is kept; your admin is notified.",
        "confirmed_title": "✅ Order added to your calendar",
        "label_price": "💰",
        "label_client": "👤",
        "label_flight": "✈️ flight",
        "label_passengers": "pax",
        "label_notes": "📝",
        "open_event": "Open in calendar",
        "cancel_button": "❌ Cancel order",
        "card_cancelled": "❌ Order cancelled; the event was removed from your calendar.",
        "order_cancelled": "Order cancelled",
        "already_cancelled": "The order is already cancelled",
        "not_your_order": "This is not your order.",
        "unknown_button": "This button has expired.",
        "event_price": "Price",
        "event_client": "Client",
        "event_phone": "Phone",
        "event_flight": "Flight",
        "event_passengers": "Passengers",
        "event_notes": "Notes",
        "event_original": "Original text",
        # -- en: driver's day (#5)
        # -- en: onboarding (#6 phase 2)
        # -- en: oauth (#6 phase 4)
    },
}

MAX_TELEGRAM_TEXT = 4096


def language_for(code: str | None) -> str:
    return "en" if code and code.lower().startswith("en") else "ru"


def t(lang: str, key: str, **kw: object) -> str:
    return TEXTS.get(lang, TEXTS["ru"])[key].format(**kw)


def command_name(text: str) -> str:
    """ "/Today@MyBot extra" → "/today"."""
    head = text.strip().split(maxsplit=1)[0] if text.strip() else ""
    return head.split("@", 1)[0].lower()


def fit_telegram(text: str) -> str:
    """Telegram rejects messages over 4096 characters; cut with an ellipsis instead of failing."""
    return text if len(text) <= MAX_TELEGRAM_TEXT else text[: MAX_TELEGRAM_TEXT - 1] + "…"


def format_price(order: ParsedOrder) -> str | None:
    if order.price_amount is None:
        return None
    amount = f"{order.price_amount:,.2f}".rstrip("0").rstrip(".").replace(",", " ")
    cur = order.price_currency or ""
    sign = CURRENCY_SIGNS.get(cur)
    if sign in ("$", "£", "€") and cur != "RUB":
        return f"{sign}{amount}"
    return f"{amount} {sign or cur}".strip()


def route(order: ParsedOrder) -> str:
    if order.dropoff_address:
        return f"{order.pickup_address or '?'} → {order.dropoff_address}"
    return order.pickup_address or "?"


def local_pickup(order: ParsedOrder, time_zone: str) -> datetime | None:
    return order.pickup_at.astimezone(ZoneInfo(time_zone)) if order.pickup_at else None


def event_summary(order: ParsedOrder, time_zone: str) -> str:
    at = local_pickup(order, time_zone)
    return f"{at:%H:%M} {route(order)}" if at else route(order)


def event_description(order: ParsedOrder, original_text: str, lang: str) -> str:
    lines: list[str] = []
    price = format_price(order)
    if price:
        lines.append(f"{t(lang, 'event_price')}: {price}")
    if order.client_name:
        lines.append(f"{t(lang, 'event_client')}: {order.client_name}")
    if order.client_phone:
        lines.append(f"{t(lang, 'event_phone')}: {order.client_phone}")
    if order.flight_number:
        lines.append(f"{t(lang, 'event_flight')}: {order.flight_number}")
    if order.passengers:
        lines.append(f"{t(lang, 'event_passengers')}: {order.passengers}")
    if order.notes:
        lines.append(f"{t(lang, 'event_notes')}: {order.notes}")
    if original_text:
        lines += ["", f"{t(lang, 'event_original')}:", original_text]
    return "\n".join(lines)


def confirmation(order: ParsedOrder, time_zone: str, lang: str, html_link: str | None) -> str:
    at = local_pickup(order, time_zone)
    lines = [t(lang, "confirmed_title")]
    if at:
        lines.append(f"🕗 {at:%d.%m %H:%M}")
    lines.append(f"📍 {route(order)}")
    price = format_price(order)
    if price:
        lines.append(f"{t(lang, 'label_price')} {price}")
    client = " ".join(x for x in (order.client_name, order.client_phone) if x)
    if client:
        lines.append(f"{t(lang, 'label_client')} {client}")
    if order.flight_number:
        lines.append(f"{t(lang, 'label_flight')} {order.flight_number}")
    if order.passengers:
        lines.append(f"{order.passengers} {t(lang, 'label_passengers')}")
    if order.notes:
        lines.append(f"{t(lang, 'label_notes')} {order.notes}")
    if html_link:
        lines.append(f"🔗 {html_link}")
    return fit_telegram("\n".join(lines))
