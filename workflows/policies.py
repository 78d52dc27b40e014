"""Timeouts and retry policies, named by what they protect. Call sites pass them explicitly."""

from datetime import timedelta

from temporalio.common import RetryPolicy

# Postgres: a restart or failover is transient; keep trying with backoff.
DB_TIMEOUT = timedelta(seconds=10)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)

# The parser is pure and fast; a failure there is a bug, not an outage.
PARSE_TIMEOUT = timedelta(seconds=5)

PARSE_RETRY = RetryPolicy(maximum_attempts=3)

# An order screenshot: the download is retried like any Telegram call; Tesseract itself is stopped by its
# own 30-second timeout (a slower picture is reported, not retried), so this only bounds a stuck download
# or a queue of pictures waiting for a free core.
PICTURE_TIMEOUT = timedelta(seconds=90)
PICTURE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=["TelegramForbidden", "TelegramBadRequest", "TelegramUnauthorized"],
)

# Telegram: 5xx and network errors retried; 429 waits for retry_after (ApplicationError.next_retry_delay).
TELEGRAM_TIMEOUT = timedelta(seconds=20)
TELEGRAM_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["TelegramForbidden", "TelegramBadRequest", "TelegramUnauthorized"],
)
# A pressed button's spinner: Telegram forgets an unanswered press after a while.
CALLBACK_GIVE_UP = timedelta(minutes=2)
# A reply that cannot go out for a day is given up (and audited); the event is already written.
TELEGRAM_GIVE_UP = timedelta(days=1)

# Google Calendar: 5xx, 429 and 403 rateLimitExceeded retried with backoff for up to a day (an outage
# loses nothing); not-found / read-only / bad credentials are permanent.
CALENDAR_TIMEOUT = timedelta(seconds=30)
CALENDAR_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=[
        "CalendarNotFound",
        "CalendarReadOnly",
        "CalendarAuthFailed",
        "CalendarBadRequest",
        "CalendarGrantRevoked",  # the driver must /connect again (the order is paused, not lost)
    ],
)
CALENDAR_GIVE_UP = timedelta(days=1)

# The optional LLM fallback: a few tries, then the driver is asked instead (it never blocks an order).
LLM_TIMEOUT = timedelta(seconds=30)
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=["LlmRejected"],
)

# How long a question to the driver (missing time or pickup) stays open.
ANSWER_WAIT = timedelta(hours=24)
MAX_QUESTIONS = 3

# An order's workflow watches it (buttons, changes, the reminder) until this long after the pickup;
# later presses are handled by the press's own flow.
ORDER_WATCH_AFTER = timedelta(hours=6)
# How long the ✏️ question ("send the new time") stays open.
FIELD_ANSWER_WAIT = timedelta(hours=1)
# Starting another workflow through the worker's client: the server was just reachable (it runs us).
START_WORKFLOW_TIMEOUT = timedelta(seconds=10)
START_WORKFLOW_RETRY = DB_RETRY

# Google's OAuth revoke endpoint (/disconnect): a few tries over a couple of minutes, then the driver is
# told to try again (nothing is half done: our row changes only after Google answered).
OAUTH_TIMEOUT = timedelta(seconds=30)
OAUTH_GIVE_UP = timedelta(minutes=2)
OAUTH_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0)
