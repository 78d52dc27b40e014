"""Every text the driver sees, one place per language. Pure: workflows import it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.agenda import AgendaItem
from schemas.calendar import ConflictingEvent
from schemas.driver import DriverSettings
from schemas.lifecycle import EDITABLE_FIELDS
from schemas.order import ParsedOrder
from schemas.settings import AGENDA_TIMES, FIELDS, MINUTE_CHOICES, SETTINGS_PREFIX, TIME_ZONES, parse_value

CURRENCY_SIGNS = {"RUB": "₽", "USD": "$", "EUR": "€", "GBP": "£", "KZT": "₸", "UAH": "₴", "TRY": "₺"}
# "перенос на 10:30", "move to 11": a message that changes an order rather than places one.
RESCHEDULE_WORDS = (
    "перенос",
    "перенес",
    "переносится",
    "сдвиг",
    "передвин",
    "reschedul",
    "move to",
    "moved to",
    "postpone",
)
CANCEL_WORDS = {"отмена", "отменить", "cancel", "stop", "стоп", "нет", "no"}

TEXTS: dict[str, dict[str, str]] = {
    "ru": {
        "unknown_chat": (
            "Этот чат не подключён к Auto-Dispatcher.\nПередайте администратору ваш chat id: {chat_id}"
        ),
        "driver_disabled": "Ваш доступ к Auto-Dispatcher отключён. Обратитесь к администратору.",
        "driver_pending": "Ваша регистрация ожидает подтверждения. Заказы пока не принимаются.",
        "calendar_prove": (
            "🔒 Подтвердите, что календарь «{calendar_id}» — ваш: пока вы этого не сделали, бот не читает его "
            "и ничего в него не пишет.\n"
            "1. Откройте Google Календарь на компьютере → слева наведите на этот календарь → ⋮ → "
            "«Настройки и общий доступ».\n"
            "2. В поле «Описание» вставьте код {code} (остальной текст можно оставить) и сохраните.\n"
            "3. Пришлите мне любое сообщение — я проверю код. После подтверждения код можно удалить.\n"
            "Если это основной календарь вашего Google-аккаунта, подтвердить можно и командой /connect.\n"
            "Так никто другой не сможет указать ваш календарь, а вы — чужой."
        ),
        "calendar_prove_after": (
            "🔒 Последний шаг: подтвердите, что календарь ваш. В Google Календаре откройте его настройки → "
            "«Описание», вставьте код {code}, сохраните и пришлите мне любое сообщение."
        ),
        "help": (
            "Перешлите мне текст заказа, например:\n"
            "«завтра 9:30 Внуково → Тверская 7, 2500₽, Анна +7 916 123-45-67»\n"
            "Я добавлю его в ваш Google Календарь и пришлю подтверждение."
        ),
        "send_text": "Я понимаю только текст заказа. Пришлите его сообщением.",
        "order_unreadable": (
            "Не получилось прочитать этот заказ: сообщение слишком длинное или необычное. "
            "Пришлите заказы по одному, коротким текстом."
        ),
        "picture_note": "📷 Заказ прочитан с картинки — проверьте время, адреса и телефон.",
        "picture_caption_only": "📷 Саму картинку прочитать не удалось, заказ записан по подписи к ней.",
        "picture_unavailable": (
            "Картинки на этом сервере пока не читаются (не установлено распознавание текста). "
            "Пришлите заказ текстом."
        ),
        "picture_unreadable": (
            "Не смог прочитать картинку. Пришлите заказ текстом или скриншот, где текст крупный и чёткий."
        ),
        "picture_no_order": (
            "На картинке не нашёл заказа. Пришлите скриншот, где видны время и адреса, или текст заказа."
        ),
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
        "weekdays": "пн,вт,ср,чт,пт,сб,вс",
        "agenda_title_today": "📅 Сегодня, {day}",
        "agenda_title_tomorrow": "📅 Завтра, {day}",
        "agenda_title_morning": "☀️ Доброе утро! Заказы на сегодня, {day}",
        "agenda_title_week": "📅 Неделя {first} – {last}",
        "agenda_empty_day": "Заказов нет.",
        "agenda_all_day": "весь день",
        "agenda_orders": "заказ|заказа|заказов",
        "agenda_day_total": "Итого: {summary}",
        "agenda_week_total": "За неделю: {summary}",
        "agenda_more": "… и ещё {count}",
        "agenda_failed": "Не удалось прочитать календарь ({reason}). Попробуйте позже.",
        "settings_title": "⚙️ Настройки",
        "settings_tz": "🌍 Часовой пояс",
        "settings_rem": "⏰ Напоминание",
        "settings_dur": "⏱ Длительность заказа",
        "settings_buf": "↔️ Запас между заказами",
        "settings_trv": "🚗 Дорога до подачи",
        "settings_ag": "☀️ Утренняя сводка",
        "settings_sc": "📋 Показывать",
        "settings_lang": "🗣 Язык",
        "settings_pick_tz": "Выберите часовой пояс. Другой: отправьте /settings tz Регион/Город (например /settings tz Asia/Tbilisi).",
        "settings_pick_rem": "За сколько до подачи напоминать о заказе?",
        "settings_pick_dur": "Сколько длится заказ в календаре?",
        "settings_pick_buf": "Какой запас оставлять между заказами при проверке пересечений?",
        "settings_pick_trv": "Сколько обычно занимает дорога до подачи?",
        "settings_pick_ag": "Когда присылать сводку заказов на день? Своё время: /settings agenda 06:45",
        "settings_pick_sc": "Что показывать в /today, /tomorrow, /week и утренней сводке?",
        "settings_pick_lang": "Язык бота:",
        "settings_back": "« Назад",
        "settings_saved": "✅ Сохранено",
        "settings_invalid": "Не понял «{value}». Примеры: /settings tz Europe/Moscow, /settings agenda 06:45, /settings agenda off, /settings reminder 30, /settings lang en",
        "value_minutes": "{n} мин",
        "value_before": "за {n} мин",
        "value_off": "выкл.",
        "value_default": "по умолчанию",
        "value_at": "в {time}",
        "scope_ours": "только мои заказы",
        "scope_all": "все события календаря",
        "lang_ru": "Русский",
        "lang_en": "English",
        "cmd_today": "Заказы на сегодня",
        "cmd_tomorrow": "Заказы на завтра",
        "cmd_week": "Заказы на неделю",
        "cmd_settings": "Настройки: пояс, напоминания, сводка, язык",
        "cmd_help": "Как прислать заказ",
        "status_in_calendar": "Ждёт подтверждения: ✅ — беру, ✏️ — изменить, ❌ — отменить.",
        "status_confirmed": "✅ Подтверждён",
        "status_changed": "✏️ Изменён",
        "conflict_line": "⚠️ Пересекается: {what}",
        "conflict_all_day": "весь день",
        "confirm_button": "✅ Беру",
        "edit_button": "✏️ Изменить",
        "back_button": "↩️ Назад",
        "field_pickup_at": "🕗 Время",
        "field_pickup_address": "📍 Откуда",
        "field_dropoff_address": "🏁 Куда",
        "field_price_amount": "💰 Цена",
        "field_client_name": "👤 Клиент",
        "field_client_phone": "📞 Телефон",
        "field_flight_number": "✈️ Рейс",
        "choose_field": "Что изменить?",
        "ask_field": "Пришлите новое значение — {field}.\nОтветьте «отмена», чтобы оставить как было.",
        "field_not_understood": "Не понял: {field}. Пришлите ещё раз или «отмена».",
        "edit_dropped": "Хорошо, заказ без изменений.",
        "edit_expired": "Не дождался нового значения — заказ без изменений.",
        "order_confirmed": "Заказ подтверждён",
        "order_changed": "✏️ Заказ изменён: {what}",
        "order_cancelled_reply": "❌ Заказ {what} отменён, событие удалено из календаря.",
        "order_unchanged": "Этот заказ уже в календаре без изменений: {what}",
        "order_gone": "Этот заказ уже в прошлом или отменён — изменить его нельзя.",
        "change_which": (
            "Похоже, это изменение заказа. Ответьте (reply) на карточку заказа или укажите телефон "
            "клиента — и я изменю тот заказ."
        ),
        "reminder": "⏰ Через {minutes} мин подача",
        "orders_in_message": "В сообщении {count} заказа(ов) — карточка на каждый.",
        # -- ru: onboarding (#6 phase 2)
        "unknown_chat_start": (
            "Этот чат не подключён к Auto-Dispatcher.\n"
            "Чтобы подключиться, откройте ссылку-приглашение от администратора автопарка или отправьте /start.\n"
            "Ваш chat id (для администратора): {chat_id}"
        ),
        "onb_need_invite": (
            "Чтобы подключиться, откройте ссылку-приглашение от администратора вашего автопарка "
            "(вида https://t.me/…?start=…) или пришлите мне код приглашения.\n"
            "Ваш chat id (для администратора): {chat_id}"
        ),
        "onb_bad_code": (
            "Код приглашения «{code}» не найден или больше не действует. Попросите у администратора "
            "автопарка свежую ссылку и откройте её (или пришлите код сообщением)."
        ),
        "onb_tenant_closed": "Этот автопарк сейчас не принимает новых водителей. Обратитесь к администратору.",
        "onb_still_with": "Продолжаем подключение к автопарку «{tenant}».",
        "onb_welcome": "Здравствуйте! Подключаю вас к автопарку «{tenant}». Это займёт пару минут.",
        "onb_resumed": "Продолжаем подключение к автопарку «{tenant}».",
        "onb_instructions": (
            "1. Откройте Google Календарь на компьютере: calendar.google.com.\n"
            "2. Слева в «Мои календари» наведите на календарь для заказов → ⋮ → «Настройки и общий доступ».\n"
            "3. «Открыть доступ пользователям или группам» → «Добавить пользователей и группы» → "
            "введите {account} и выберите право «Внесение изменений в мероприятия» → «Отправить».\n"
            "4. Пришлите мне идентификатор календаря: «Интеграция календаря» → «Идентификатор календаря» "
            "(для основного календаря это ваш адрес Gmail). Можно просто прислать ссылку на страницу "
            "настроек календаря из адресной строки.\n"
            "Передумали — напишите «отмена»."
        ),
        "onb_send_calendar": (
            "Жду идентификатор календаря, открытого для {account} с правом «Внесение изменений в "
            "мероприятия»: идентификатор (…@group.calendar.google.com), адрес Gmail или ссылку на "
            "настройки календаря. Отправьте /start, чтобы увидеть инструкцию ещё раз."
        ),
        "onb_not_a_calendar": (
            "Не нашёл здесь идентификатора календаря. Пришлите идентификатор "
            "(например c_abc…@group.calendar.google.com), адрес Gmail основного календаря или ссылку на "
            "страницу настроек календаря."
        ),
        "onb_not_shared": (
            "❌ Календарь «{calendar_id}» не найден или не открыт для {account}.\n"
            "Проверьте идентификатор и доступ: «Настройки и общий доступ» → «Открыть доступ пользователям "
            "или группам» → {account} с правом «Внесение изменений в мероприятия». Затем пришлите "
            "идентификатор ещё раз."
        ),
        "onb_read_only": (
            "❌ Календарь «{calendar_id}» открыт для {account} только для просмотра ({role}).\n"
            "Измените право на «Внесение изменений в мероприятия» («Настройки и общий доступ» → "
            "«Открыть доступ пользователям или группам») и пришлите идентификатор ещё раз."
        ),
        "onb_check_unavailable": (
            "Google Календарь сейчас не отвечает, проверить доступ не получилось. Пришлите идентификатор "
            "ещё раз через пару минут."
        ),
        "onb_check_failed": (
            "❌ Не удалось проверить календарь «{calendar_id}» ({reason}). Проверьте идентификатор; если не "
            "поможет — обратитесь к администратору автопарка."
        ),
        "onb_done_approval": (
            "✅ Готово: календарь «{calendar_id}» подключён, бот может записывать в него заказы.\n"
            "Регистрация ожидает подтверждения администратором автопарка «{tenant}». После подтверждения "
            "просто пересылайте мне заказы."
        ),
        "onb_done_payment": (
            "✅ Готово: календарь «{calendar_id}» подключён, бот может записывать в него заказы.\n"
            "Чтобы начать принимать заказы, оплатите подписку: /subscribe"
        ),
        "onb_done_active": (
            "✅ Готово: календарь «{calendar_id}» подключён, доступ в автопарке «{tenant}» уже открыт. "
            "Пересылайте мне заказы."
        ),
        "onb_already_registered": "Этот чат уже подключён к Auto-Dispatcher. По вопросам доступа — к администратору.",
        "onb_nudge_calendar": (
            "Напоминаю: чтобы закончить подключение, откройте доступ к календарю для {account} "
            "(«Внесение изменений в мероприятия») и пришлите мне его идентификатор. "
            "Инструкция — /start, передумали — «отмена»."
        ),
        "onb_nudge_invite": (
            "Напоминаю: чтобы подключиться, откройте ссылку-приглашение от администратора автопарка "
            "или пришлите код приглашения. Передумали — «отмена»."
        ),
        "onb_gave_up": (
            "Подключение не завершено: от вас не было сообщений 7 дней, я его закрыл. "
            "Когда будете готовы, отправьте /start — начнём заново."
        ),
        "onb_cancelled": "Подключение отменено. Отправьте /start, если захотите начать заново.",
        "onb_bot_account": "сервисного аккаунта бота (адрес подскажет администратор)",
        # -- ru: billing (#6 phase 3)
        "access_opened": (
            "✅ Доступ открыт: администратор «{tenant}» подтвердил вашу регистрацию. Пересылайте мне заказы — "
            "я запишу их в ваш календарь."
        ),
        "billing_paid": "✅ Оплата получена. Подписка Auto-Dispatcher активна до {until}.",
        "billing_paid_awaiting_approval": (
            "Оплата получена (подписка до {until}). Доступ включится, когда администратор парка "
            "подтвердит вашу регистрацию."
        ),
        "billing_paid_blocked": "Оплата получена (подписка до {until}), но ваш доступ отключён администратором. Обратитесь к администратору.",
        "billing_warning": "⏳ Подписка Auto-Dispatcher заканчивается {until}. Продлите её командой /subscribe, чтобы заказы и дальше попадали в календарь.",
        "billing_expired": "Подписка Auto-Dispatcher закончилась {until}: новые заказы не принимаются. Продлите её командой /subscribe.",
        "billing_invoice_title": "Auto-Dispatcher",
        "billing_invoice_description": "Подписка на {days} дн.: заказы из Telegram сразу в ваш Google Календарь.",
        "billing_invoice_label": "Подписка на {days} дн.",
        "billing_payments_unavailable": "Оплата в Telegram пока не настроена. Обратитесь к администратору.",
        "billing_invoice_failed": "Не удалось выставить счёт ({reason}). Попробуйте позже или обратитесь к администратору.",
        "billing_checkout_invalid": "Этот счёт больше не действует. Отправьте /subscribe, чтобы получить новый.",
        "billing_checkout_unknown_chat": "Этот чат не подключён к Auto-Dispatcher. Обратитесь к администратору.",
        "billing_checkout_unavailable": "Оплата временно недоступна. Попробуйте через минуту.",
        # -- ru: oauth (#6 phase 4)
        "connect_intro": (
            "Подключите свой Google Календарь одной кнопкой: бот будет записывать заказы в него от вашего имени.\n"
            "Ссылка действует 10 минут и только для этого чата."
        ),
        "connect_button": "🔗 Подключить Google Календарь",
        "connect_unavailable": "Подключение Google Календаря на этом сервере не настроено. Обратитесь к администратору.",
        "disconnected": (
            "🔌 Google-аккаунт отключён: бот больше не пользуется вашим доступом, Google его тоже отозвал. "
            "Новые заказы будут записываться в календарь «{calendar_id}», только если он открыт боту через "
            "«Поделиться». Подключить снова: /connect."
        ),
        "disconnect_nothing": (
            "Ваш Google-аккаунт не подключён к боту, отключать нечего. Заказы записываются в календарь "
            "«{calendar_id}» через «Поделиться»."
        ),
        "disconnect_failed": "Не получилось отключить Google-аккаунт: Google не ответил. Попробуйте /disconnect ещё раз через пару минут.",
        "calendar_connected": "✅ Google Календарь подключён. Заказы будут записываться в него от вашего имени.",
        "calendar_reconnect": (
            "⏸ Доступ бота к вашему Google Календарю отозван или истёк, заказ пока не записан.\n"
            "Он сохранён и будет записан, как только вы снова подключите календарь: отправьте /connect."
        ),
        "oauth_page_title": "Auto-Dispatcher · Google Календарь",
        "oauth_page_connected": "Календарь подключён. Вернитесь в Telegram — бот уже написал вам.",
        "oauth_page_invalid": "Эта ссылка недействительна. Отправьте боту /connect, чтобы получить новую.",
        "oauth_page_expired": "Ссылка устарела (она действует 10 минут). Отправьте боту /connect ещё раз.",
        "oauth_page_used": "Эта ссылка уже использована. Если календарь не подключён, отправьте боту /connect.",
        "oauth_page_denied": "Подключение отменено, ничего не изменилось. Чтобы подключить календарь, отправьте боту /connect.",
        "oauth_page_failed": "Google не подтвердил подключение ({reason}). Отправьте боту /connect и попробуйте снова.",
        "oauth_page_unavailable": "Подключение Google Календаря на этом сервере не настроено.",
    },
    "en": {
        "unknown_chat": (
            "This chat is not connected to Auto-Dispatcher.\nGive your admin this chat id: {chat_id}"
        ),
        "driver_disabled": "Your Auto-Dispatcher access is disabled. Please contact your admin.",
        "driver_pending": "Your registration is waiting for approval. Orders are not accepted yet.",
        "calendar_prove": (
            "🔒 Please confirm that calendar “{calendar_id}” is yours: until you do, the bot neither reads it "
            "nor writes anything into it.\n"
            "1. Open Google Calendar on a computer → on the left, hover over this calendar → ⋮ → "
            "“Settings and sharing”.\n"
            "2. Paste the code {code} into its “Description” (any other text may stay) and save.\n"
            "3. Send me any message and I will check the code. Once confirmed, you may remove it.\n"
            "If it is the main calendar of your own Google account, /connect proves it too.\n"
            "This way nobody else can name your calendar, and nobody can name someone else's."
        ),
        "calendar_prove_after": (
            "🔒 One last step: confirm the calendar is yours. In Google Calendar open its settings → "
            "“Description”, paste the code {code}, save, and send me any message."
        ),
        "help": (
            "Forward me an order text, for example:\n"
            "“tomorrow 9:30 am JFK → 5th Ave 700, $90, Anna +1 212 555 0100”\n"
            "I will add it to your Google Calendar and confirm."
        ),
        "send_text": "I only understand order texts. Please send it as a text message.",
        "order_unreadable": (
            "I could not read this order: the message is too long or unusual. "
            "Please send the orders one at a time, as short texts."
        ),
        "picture_note": "📷 Read from a picture — please check the time, the addresses and the phone.",
        "picture_caption_only": "📷 The picture itself could not be read; the order is from its caption.",
        "picture_unavailable": (
            "Pictures cannot be read on this server yet (text recognition is not installed). "
            "Please send the order as text."
        ),
        "picture_unreadable": (
            "I could not read the picture. Please send the order as text, or a screenshot with large, sharp text."
        ),
        "picture_no_order": (
            "I found no order in the picture. Send a screenshot that shows the time and the addresses, or the text."
        ),
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
        "weekdays": "Mon,Tue,Wed,Thu,Fri,Sat,Sun",
        "agenda_title_today": "📅 Today, {day}",
        "agenda_title_tomorrow": "📅 Tomorrow, {day}",
        "agenda_title_morning": "☀️ Good morning! Today's orders, {day}",
        "agenda_title_week": "📅 Week {first} – {last}",
        "agenda_empty_day": "No orders.",
        "agenda_all_day": "all day",
        "agenda_orders": "order|orders|orders",
        "agenda_day_total": "Total: {summary}",
        "agenda_week_total": "Week total: {summary}",
        "agenda_more": "… and {count} more",
        "agenda_failed": "Could not read your calendar ({reason}). Please try again later.",
        "settings_title": "⚙️ Settings",
        "settings_tz": "🌍 Time zone",
        "settings_rem": "⏰ Reminder",
        "settings_dur": "⏱ Order duration",
        "settings_buf": "↔️ Buffer between orders",
        "settings_trv": "🚗 Travel to pickup",
        "settings_ag": "☀️ Morning agenda",
        "settings_sc": "📋 Show",
        "settings_lang": "🗣 Language",
        "settings_pick_tz": "Pick your time zone. Another one: send /settings tz Region/City (e.g. /settings tz America/New_York).",
        "settings_pick_rem": "How long before the pickup should I remind you?",
        "settings_pick_dur": "How long is an order in your calendar?",
        "settings_pick_buf": "How much buffer to keep between orders when checking overlaps?",
        "settings_pick_trv": "How long does it usually take you to reach a pickup?",
        "settings_pick_ag": "When should I send the day's orders? Your own time: /settings agenda 06:45",
        "settings_pick_sc": "What should /today, /tomorrow, /week and the morning agenda show?",
        "settings_pick_lang": "Bot language:",
        "settings_back": "« Back",
        "settings_saved": "✅ Saved",
        "settings_invalid": "I did not understand “{value}”. Examples: /settings tz Europe/London, /settings agenda 06:45, /settings agenda off, /settings reminder 30, /settings lang ru",
        "value_minutes": "{n} min",
        "value_before": "{n} min before",
        "value_off": "off",
        "value_default": "default",
        "value_at": "at {time}",
        "scope_ours": "only my orders",
        "scope_all": "all calendar events",
        "lang_ru": "Русский",
        "lang_en": "English",
        "cmd_today": "Today's orders",
        "cmd_tomorrow": "Tomorrow's orders",
        "cmd_week": "This week's orders",
        "cmd_settings": "Settings: time zone, reminders, agenda, language",
        "cmd_help": "How to send an order",
        "status_in_calendar": "Awaiting you: ✅ take it, ✏️ change, ❌ cancel.",
        "status_confirmed": "✅ Confirmed",
        "status_changed": "✏️ Changed",
        "conflict_line": "⚠️ overlaps {what}",
        "conflict_all_day": "all day",
        "confirm_button": "✅ Take it",
        "edit_button": "✏️ Change",
        "back_button": "↩️ Back",
        "field_pickup_at": "🕗 Time",
        "field_pickup_address": "📍 Pickup",
        "field_dropoff_address": "🏁 Drop-off",
        "field_price_amount": "💰 Price",
        "field_client_name": "👤 Client",
        "field_client_phone": "📞 Phone",
        "field_flight_number": "✈️ Flight",
        "choose_field": "What should change?",
        "ask_field": "Send the new value: {field}.\nReply “cancel” to keep it as it is.",
        "field_not_understood": "I could not read: {field}. Send it again or “cancel”.",
        "edit_dropped": "OK, the order stays as it was.",
        "edit_expired": "No new value received; the order stays as it was.",
        "order_confirmed": "Order confirmed",
        "order_changed": "✏️ Order changed: {what}",
        "order_cancelled_reply": "❌ Order {what} cancelled; the event was removed from your calendar.",
        "order_unchanged": "This order is already in your calendar, unchanged: {what}",
        "order_gone": "This order is over or cancelled; it can no longer be changed.",
        "change_which": (
            "This looks like a change to an order. Reply to the order's card, or name the client's phone, "
            "and I will change that order."
        ),
        "reminder": "⏰ Pickup in {minutes} min",
        "orders_in_message": "{count} orders in this message: one card each.",
        # -- en: onboarding (#6 phase 2)
        "unknown_chat_start": (
            "This chat is not connected to Auto-Dispatcher.\n"
            "To connect, open the invite link from your fleet admin or send /start.\n"
            "Your chat id (for the admin): {chat_id}"
        ),
        "onb_need_invite": (
            "To connect, open the invite link from your fleet admin (https://t.me/…?start=…) or send me "
            "the invite code.\nYour chat id (for the admin): {chat_id}"
        ),
        "onb_bad_code": (
            "The invite code “{code}” is unknown or no longer valid. Ask your fleet admin for a fresh link "
            "and open it (or send me the code)."
        ),
        "onb_tenant_closed": "This fleet is not accepting new drivers right now. Please contact your admin.",
        "onb_still_with": "We continue connecting you to “{tenant}”.",
        "onb_welcome": "Hello! Let's connect you to “{tenant}”. It takes a couple of minutes.",
        "onb_resumed": "Let's continue connecting you to “{tenant}”.",
        "onb_instructions": (
            "1. Open Google Calendar on a computer: calendar.google.com.\n"
            "2. Under “My calendars”, hover over the calendar for your orders → ⋮ → “Settings and sharing”.\n"
            "3. “Share with specific people or groups” → “Add people and groups” → enter {account} and pick "
            "the permission “Make changes to events” → “Send”.\n"
            "4. Send me the calendar id: “Integrate calendar” → “Calendar ID” (for your main calendar it is "
            "your Gmail address). You may also just send the settings page's address from the browser.\n"
            "Changed your mind? Send “cancel”."
        ),
        "onb_send_calendar": (
            "I am waiting for the id of a calendar shared with {account} with “Make changes to events”: the "
            "id (…@group.calendar.google.com), your Gmail address, or the calendar's settings link. "
            "Send /start to see the steps again."
        ),
        "onb_not_a_calendar": (
            "I could not find a calendar id in that. Send the id (e.g. c_abc…@group.calendar.google.com), the "
            "Gmail address of your main calendar, or the link of the calendar's settings page."
        ),
        "onb_not_shared": (
            "❌ Calendar “{calendar_id}” was not found, or it is not shared with {account}.\n"
            "Check the id and the sharing: “Settings and sharing” → “Share with specific people or groups” → "
            "{account} with “Make changes to events”. Then send the id again."
        ),
        "onb_read_only": (
            "❌ Calendar “{calendar_id}” is shared with {account} read-only ({role}).\n"
            "Change the permission to “Make changes to events” (“Settings and sharing” → “Share with specific "
            "people or groups”) and send the id again."
        ),
        "onb_check_unavailable": (
            "Google Calendar is not answering right now, so I could not check the access. Please send the "
            "id again in a few minutes."
        ),
        "onb_check_failed": (
            "❌ I could not check calendar “{calendar_id}” ({reason}). Check the id; if that does not help, "
            "contact your fleet admin."
        ),
        "onb_done_approval": (
            "✅ Done: calendar “{calendar_id}” is connected and the bot can write orders into it.\n"
            "Your registration is waiting for approval by the admin of “{tenant}”. Once approved, just "
            "forward me your orders."
        ),
        "onb_done_payment": (
            "✅ Done: calendar “{calendar_id}” is connected and the bot can write orders into it.\n"
            "To start receiving orders, pay for the subscription: /subscribe"
        ),
        "onb_done_active": (
            "✅ Done: calendar “{calendar_id}” is connected and your access to “{tenant}” is already open. "
            "Forward me your orders."
        ),
        "onb_already_registered": "This chat is already connected to Auto-Dispatcher. Ask your admin about access.",
        "onb_nudge_calendar": (
            "A reminder: to finish connecting, share your calendar with {account} (“Make changes to events”) "
            "and send me its id. The steps: /start; changed your mind: “cancel”."
        ),
        "onb_nudge_invite": (
            "A reminder: to connect, open the invite link from your fleet admin or send me the invite code. "
            "Changed your mind? Send “cancel”."
        ),
        "onb_gave_up": (
            "Connecting is not finished: I have not heard from you for 7 days, so I closed it. When you "
            "are ready, send /start and we start again."
        ),
        "onb_cancelled": "Connecting cancelled. Send /start if you want to start again.",
        "onb_bot_account": "the bot's service account (your admin knows its address)",
        # -- en: billing (#6 phase 3)
        "access_opened": (
            "✅ Your access is open: the admin of “{tenant}” approved your registration. Forward me your "
            "orders and I will put them into your calendar."
        ),
        "billing_paid": "✅ Payment received. Your Auto-Dispatcher subscription is active until {until}.",
        "billing_paid_awaiting_approval": (
            "Payment received (subscription until {until}). Your access starts once your fleet's admin "
            "approves your registration."
        ),
        "billing_paid_blocked": "Payment received (subscription until {until}), but your access is disabled by your admin. Please contact your admin.",
        "billing_warning": "⏳ Your Auto-Dispatcher subscription ends {until}. Renew it with /subscribe to keep your orders going into your calendar.",
        "billing_expired": "Your Auto-Dispatcher subscription ended {until}: new orders are not accepted. Renew it with /subscribe.",
        "billing_invoice_title": "Auto-Dispatcher",
        "billing_invoice_description": "{days}-day subscription: orders from Telegram straight into your Google Calendar.",
        "billing_invoice_label": "{days}-day subscription",
        "billing_payments_unavailable": "Payments in Telegram are not set up yet. Please contact your admin.",
        "billing_invoice_failed": "Could not send the invoice ({reason}). Try again later or contact your admin.",
        "billing_checkout_invalid": "This invoice is no longer valid. Send /subscribe for a new one.",
        "billing_checkout_unknown_chat": "This chat is not connected to Auto-Dispatcher. Please contact your admin.",
        "billing_checkout_unavailable": "Payments are briefly unavailable. Please try again in a minute.",
        # -- en: oauth (#6 phase 4)
        "connect_intro": (
            "Connect your own Google Calendar with one tap: the bot will write orders into it as you.\n"
            "The link works for 10 minutes and only for this chat."
        ),
        "connect_button": "🔗 Connect Google Calendar",
        "connect_unavailable": "Connecting a Google Calendar is not set up on this server. Please contact your admin.",
        "disconnected": (
            "🔌 Google account disconnected: the bot no longer uses your access, and Google revoked it too. "
            "New orders go into calendar “{calendar_id}” only if it is shared with the bot. To connect "
            "again: /connect."
        ),
        "disconnect_nothing": (
            "Your Google account is not connected to the bot; there is nothing to disconnect. Orders go into "
            "calendar “{calendar_id}” through its sharing."
        ),
        "disconnect_failed": "Could not disconnect your Google account: Google did not answer. Try /disconnect again in a few minutes.",
        "calendar_connected": "✅ Google Calendar connected. Orders will be written into it as you.",
        "calendar_reconnect": (
            "⏸ The bot's access to your Google Calendar was revoked or has expired; the order is not written yet.\n"
            "It is kept and will be written as soon as you connect your calendar again: send /connect."
        ),
        "oauth_page_title": "Auto-Dispatcher · Google Calendar",
        "oauth_page_connected": "Your calendar is connected. Go back to Telegram: the bot has messaged you.",
        "oauth_page_invalid": "This link is not valid. Send /connect to the bot to get a new one.",
        "oauth_page_expired": "This link has expired (it works for 10 minutes). Send /connect to the bot again.",
        "oauth_page_used": "This link was already used. If your calendar is not connected, send /connect to the bot.",
        "oauth_page_denied": "Connecting was cancelled; nothing changed. To connect your calendar, send /connect to the bot.",
        "oauth_page_failed": "Google did not confirm the connection ({reason}). Send /connect to the bot and try again.",
        "oauth_page_unavailable": "Connecting a Google Calendar is not set up on this server.",
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


def is_cancel(text: str) -> bool:
    return text.strip().lower().strip(".!") in CANCEL_WORDS


def is_reschedule(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in RESCHEDULE_WORDS)


def conflict_text(conflict: ConflictingEvent, time_zone: str, lang: str) -> str:
    """ "14:00 Шереметьево → Химки": our own events' summaries already start with their time."""
    if conflict.start is None:
        return f"{t(lang, 'conflict_all_day')} {conflict.summary}".strip()
    hm = f"{conflict.start.astimezone(ZoneInfo(time_zone)):%H:%M}"
    return conflict.summary if conflict.summary.startswith(hm) else f"{hm} {conflict.summary}".strip()


def order_card(
    order: ParsedOrder,
    time_zone: str,
    lang: str,
    html_link: str | None,
    *,
    status: str = "in_calendar",
    conflicts: list[ConflictingEvent] | None = None,
    changed: bool = False,
) -> str:
    """The card under an order: the confirmation, what it overlaps, and where it stands."""
    if status == "cancelled":
        return fit_telegram(f"{confirmation(order, time_zone, lang, None)}\n\n{t(lang, 'card_cancelled')}")
    lines = [confirmation(order, time_zone, lang, html_link)]
    extra = [t(lang, "conflict_line", what=conflict_text(c, time_zone, lang)) for c in conflicts or []]
    if changed:
        extra.append(t(lang, "status_changed"))
    extra.append(t(lang, "status_confirmed" if status == "confirmed" else "status_in_calendar"))
    return fit_telegram("\n".join(lines) + "\n\n" + "\n".join(extra))


def card_buttons(
    order_id: str, lang: str, status: str, choosing_field: bool = False
) -> list[list[dict[str, str]]] | None:
    """✅ / ✏️ / ❌ under a live card; the field list after ✏️; none under a cancelled one."""
    if status == "cancelled":
        return None
    if choosing_field:
        cells = [
            {"text": t(lang, f"field_{f}"), "callback_data": f"field:{f}:{order_id}"} for f in EDITABLE_FIELDS
        ]
        rows = [cells[i : i + 2] for i in range(0, len(cells), 2)]
        return [*rows, [{"text": t(lang, "back_button"), "callback_data": f"back:{order_id}"}]]
    row = (
        []
        if status == "confirmed"
        else [{"text": t(lang, "confirm_button"), "callback_data": f"ok:{order_id}"}]
    )
    row += [
        {"text": t(lang, "edit_button"), "callback_data": f"edit:{order_id}"},
        {"text": t(lang, "cancel_button"), "callback_data": f"cancel:{order_id}"},
    ]
    return [row]


def workflow_summary(order: ParsedOrder, time_zone: str, driver_name: str) -> str:
    """ "05.12 14:00 Шереметьево → Ленина 10 · Иван": an order's line in the Temporal UI's list."""
    return f"{short_order(order, time_zone)} · {driver_name}"


def local_day(at: datetime, time_zone: str) -> tuple[datetime, datetime]:
    """[local midnight, next local midnight) of the day `at` falls on in `time_zone`."""
    zone = ZoneInfo(time_zone)
    local = at.astimezone(zone)
    start = datetime(local.year, local.month, local.day, tzinfo=zone)
    nxt = start.date() + timedelta(days=1)
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)


def short_order(order: ParsedOrder, time_zone: str) -> str:
    """ "23.11 14:00 Шереметьево → Химки": how a reply names an order."""
    at = local_pickup(order, time_zone)
    return f"{at:%d.%m %H:%M} {route(order)}" if at else route(order)


def reminder(order: ParsedOrder, time_zone: str, lang: str, minutes: int) -> str:
    lines = [t(lang, "reminder", minutes=minutes), f"📍 {route(order)}"]
    at = local_pickup(order, time_zone)
    if at:
        lines.insert(1, f"🕗 {at:%H:%M}")
    client = " ".join(x for x in (order.client_name, order.client_phone) if x)
    if client:
        lines.append(f"{t(lang, 'label_client')} {client}")
    if order.flight_number:
        lines.append(f"{t(lang, 'label_flight')} {order.flight_number}")
    return fit_telegram("\n".join(lines))


# -- the driver's day (#5): agenda and settings card -----------------------------------------------
SETTINGS_FIELDS: tuple[str, ...] = tuple(FIELDS)
AGENDA_TITLE_MAX = 80  # a foreign event's summary can be a paragraph; one line per order


def plural(lang: str, key: str, n: int) -> str:
    """ "2 заказа", "5 заказов", "1 order": the forms are "one|few|many" in TEXTS."""
    one, few, many = t(lang, key).split("|")
    if lang != "ru":
        return f"{n} {one if n == 1 else many}"
    if n % 10 == 1 and n % 100 != 11:
        return f"{n} {one}"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return f"{n} {few}"
    return f"{n} {many}"


def format_money(amount: float, currency: str | None) -> str:
    return format_price(ParsedOrder(price_amount=amount, price_currency=currency)) or ""


def money_totals(items: Sequence[AgendaItem]) -> dict[str, float]:
    """Sums per currency, in the order the currencies first appear (never added across currencies)."""
    sums: dict[str, float] = {}
    for item in items:
        if item.price_amount is not None:
            key = item.price_currency or ""
            sums[key] = sums.get(key, 0.0) + item.price_amount
    return sums


def totals_summary(lang: str, items: Sequence[AgendaItem]) -> str:
    """ "3 заказа · 4 300 ₽ + $90"."""
    money = " + ".join(format_money(amount, cur or None) for cur, amount in money_totals(items).items())
    count = plural(lang, "agenda_orders", len(items))
    return f"{count} · {money}" if money else count


def _day_label(lang: str, day: date) -> str:
    return f"{t(lang, 'weekdays').split(',')[day.weekday()]} {day:%d.%m}"


def agenda_line(item: AgendaItem, time_zone: str, lang: str) -> str:
    at = t(lang, "agenda_all_day") if item.all_day else f"{item.start.astimezone(ZoneInfo(time_zone)):%H:%M}"
    title = item.title or "—"
    if len(title) > AGENDA_TITLE_MAX:
        title = title[: AGENDA_TITLE_MAX - 1] + "…"
    price = format_money(item.price_amount, item.price_currency) if item.price_amount is not None else ""
    return f"{at} {title}" + (f" · {price}" if price else "")


def agenda_text(
    items: Sequence[AgendaItem], *, lang: str, kind: str, time_zone: str, first_day: date, days: int
) -> str:
    """The agenda message: one line per order, a total per day (and for the week), an empty-day line.
    An order belongs to the local day its pickup starts on, in the driver's zone. Too long for one
    Telegram message: every day keeps its header and total, the latest orders of the longest days give
    way to "… and N more"."""
    tz = ZoneInfo(time_zone)
    last_day = first_day + timedelta(days=days - 1)
    by_day: dict[date, list[AgendaItem]] = {first_day + timedelta(days=i): [] for i in range(days)}
    for item in sorted(items, key=lambda i: (i.start, not i.all_day)):
        day = item.start.astimezone(tz).date()
        if day in by_day:
            by_day[day].append(item)

    def render(keep: int) -> str:
        if days == 1:
            title = t(lang, f"agenda_title_{kind}", day=_day_label(lang, first_day))
        else:
            title = t(lang, "agenda_title_week", first=f"{first_day:%d.%m}", last=f"{last_day:%d.%m}")
        out = [title]
        for day, day_items in by_day.items():
            if days > 1:
                out += ["", _day_label(lang, day)]
            if not day_items:
                out.append(t(lang, "agenda_empty_day"))
                continue
            out += [agenda_line(i, time_zone, lang) for i in day_items[:keep]]
            if len(day_items) > keep:
                out.append(t(lang, "agenda_more", count=len(day_items) - keep))
            out.append(t(lang, "agenda_day_total", summary=totals_summary(lang, day_items)))
        every = [i for day_items in by_day.values() for i in day_items]
        if days > 1 and every:
            out += ["", t(lang, "agenda_week_total", summary=totals_summary(lang, every))]
        return "\n".join(out)

    most = max((len(v) for v in by_day.values()), default=0)
    text = render(most)
    if len(text) <= MAX_TELEGRAM_TEXT:
        return text
    low, high = 0, most  # the most lines per day that still fit
    while low < high:
        mid = (low + high + 1) // 2
        if len(render(mid)) <= MAX_TELEGRAM_TEXT:
            low = mid
        else:
            high = mid - 1
    return fit_telegram(render(low))


def settings_value(lang: str, field: str, time_zone: str, s: DriverSettings) -> str:
    """How the card shows one field's current value."""
    if field == "tz":
        return time_zone
    if field == "rem":
        return (
            t(lang, "value_before", n=s.reminder_lead_minutes)
            if s.reminder_lead_minutes
            else t(lang, "value_off")
        )
    if field == "dur":
        n = s.event_duration_minutes
        return t(lang, "value_minutes", n=n) if n else t(lang, "value_default")
    if field in ("buf", "trv"):
        n = s.buffer_minutes if field == "buf" else s.travel_minutes
        return t(lang, "value_minutes", n=n) if n else t(lang, "value_off")
    if field == "ag":
        return t(lang, "value_at", time=s.agenda_time) if s.agenda_enabled else t(lang, "value_off")
    if field == "sc":
        return t(lang, f"scope_{s.agenda_scope}")
    return t(lang, f"lang_{s.language or lang}")  # unset: the language the driver sees now


def settings_card(
    lang: str, time_zone: str, s: DriverSettings, note: str | None = None
) -> tuple[str, list[list[dict[str, str]]]]:
    """The /settings card: every value, and one button per field (opens its choices)."""
    lines = [t(lang, "settings_title"), ""]
    lines += [f"{t(lang, f'settings_{f}')}: {settings_value(lang, f, time_zone, s)}" for f in SETTINGS_FIELDS]
    if note:
        lines += ["", note]
    buttons = [
        {"text": t(lang, f"settings_{f}"), "callback_data": f"{SETTINGS_PREFIX}o:{f}"}
        for f in SETTINGS_FIELDS
    ]
    return "\n".join(lines), [buttons[i : i + 2] for i in range(0, len(buttons), 2)]


def settings_choices(
    lang: str, field: str, time_zone: str, s: DriverSettings
) -> tuple[str, list[list[dict[str, str]]]]:
    """One field's choices; the current one is marked. Pressing one saves it."""
    current = settings_value(lang, field, time_zone, s)
    options: list[tuple[str, str]]  # (label, value)
    if field == "tz":
        options = [(z.split("/", 1)[1].replace("_", " "), z) for z in TIME_ZONES]
    elif field in MINUTE_CHOICES:
        options = [
            (t(lang, "value_minutes", n=n) if n else t(lang, "value_off"), str(n))
            for n in MINUTE_CHOICES[field]
        ]
        if field == "dur":
            options.append((t(lang, "value_default"), "default"))
    elif field == "ag":
        options = [(v if v != "off" else t(lang, "value_off"), v) for v in AGENDA_TIMES]
    elif field == "sc":
        options = [(t(lang, "scope_ours"), "ours"), (t(lang, "scope_all"), "all")]
    else:
        options = [(t(lang, "lang_ru"), "ru"), (t(lang, "lang_en"), "en")]
    buttons = []
    for label, value in options:
        chosen = parse_value(field, value)
        shown = {"time_zone": time_zone, "language": s.language or lang}
        is_current = all((shown[k] if k in shown else getattr(s, k)) == v for k, v in chosen.items())
        buttons.append(
            {
                "text": f"• {label}" if is_current else label,
                "callback_data": f"{SETTINGS_PREFIX}v:{field}:{value}",
            }
        )
    per_row = 3 if field == "tz" else 2 if field in ("sc", "lang") else 3
    rows = [buttons[i : i + per_row] for i in range(0, len(buttons), per_row)]
    rows.append([{"text": t(lang, "settings_back"), "callback_data": f"{SETTINGS_PREFIX}m"}])
    text = f"{t(lang, f'settings_{field}')}: {current}\n\n{t(lang, f'settings_pick_{field}')}"
    return text, rows


def bt(lang: str, key: str, **kw: object) -> str:
    """A subscription text (the billing_* keys)."""
    return t(lang, f"billing_{key}", **kw)


def format_until(at: datetime, time_zone: str) -> str:
    """The end of a paid period in the driver's zone, e.g. `21.12.2026 09:30`."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return at.astimezone(zone).strftime("%d.%m.%Y %H:%M")
