"""The `autodispatch` admin commands as an operator runs them, against real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import Postgres, unique_chat_id

HISTORIES = Path(__file__).parent / "histories"


def cli(postgres: Postgres, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODISPATCH_")}
    env.update(AUTODISPATCH_DATABASE_URL=postgres.owner_dsn, AUTODISPATCH_APP_DATABASE_URL=postgres.app_dsn)
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "autodispatch", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_driver_add_list_disable_and_audit(postgres: Postgres) -> None:
    tenant = f"fleet-{uuid.uuid4().hex[:6]}"
    chat = unique_chat_id()
    added = cli(postgres, "driver", "add", "--tenant", tenant, "--chat-id", str(chat),
                "--calendar-id", "ivan@example.com", "--name", "Ivan Petrov", "--tz", "Europe/Samara", "--no-verify")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert f"chat {chat}" in added.stdout and tenant in added.stdout

    listed = cli(postgres, "driver", "list", "--tenant", tenant, "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["chat_id"], row["calendar_id"], row["time_zone"], row["status"]) == (
        chat, "ivan@example.com", "Europe/Samara", "active",
    )  # fmt: skip

    disabled = cli(postgres, "driver", "disable", "--chat-id", str(chat))
    assert disabled.returncode == 0 and "disabled" in disabled.stdout
    assert (
        json.loads(cli(postgres, "driver", "list", "--tenant", tenant, "--json").stdout)[0]["status"]
        == "disabled"
    )

    audit = cli(postgres, "audit", "--tenant", tenant, "--json")
    assert audit.returncode == 0, audit.stderr
    # --no-verify: the owner vouched for the calendar, on record.
    actions = [r["action"] for r in json.loads(audit.stdout)]
    assert actions == ["driver_added", "calendar_ownership_vouched", "driver_disabled"]
    assert json.loads(audit.stdout)[1]["details"]["actor"].startswith("cli:")


def test_bad_admin_input_gets_one_clear_line(postgres: Postgres) -> None:
    bad_tz = cli(postgres, "driver", "add", "--tenant", "x", "--chat-id", "1", "--calendar-id", "c", "--name", "n",
                 "--no-verify",
                 "--tz", "Mars/Olympus")  # fmt: skip
    assert bad_tz.returncode == 1
    assert (
        bad_tz.stderr.strip()
        == "error: unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Moscow)"
    )
    unknown = cli(postgres, "driver", "disable", "--chat-id", str(unique_chat_id()))
    assert unknown.returncode == 1 and "no driver with chat id" in unknown.stderr
    taken_chat = unique_chat_id()
    for tenant in ("fleet-a-" + uuid.uuid4().hex[:5], "fleet-b-" + uuid.uuid4().hex[:5]):
        res = cli(postgres, "driver", "add", "--tenant", tenant, "--chat-id", str(taken_chat), "--calendar-id", "c",
                  "--name", "n", "--no-verify")  # fmt: skip
    assert res.returncode == 1 and "already belongs to another tenant" in res.stderr


def test_broken_database_url_names_the_setting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODISPATCH_")}
    env.update(
        AUTODISPATCH_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", AUTODISPATCH_DATA_DIR=str(tmp_path)
    )
    res = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "autodispatch", "driver", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert res.stderr.strip().startswith("configuration error: AUTODISPATCH_DATABASE_URL")


def test_replay_command_on_committed_histories(postgres: Postgres, tmp_path: Path) -> None:
    ok = cli(postgres, "replay", "--file", str(HISTORIES / "order_event_created.json"))
    assert ok.returncode == 0, ok.stderr
    assert "replays cleanly" in ok.stdout
    missing = cli(postgres, "replay", "--file", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "nope.json" in missing.stderr


def test_driver_add_without_any_calendar_endpoint_says_how_to_proceed(postgres: Postgres) -> None:
    """Verification is on by default; with no Google configured and no sandbox, the admin is told why."""
    res = cli(postgres, "driver", "add", "--tenant", f"t-{uuid.uuid4().hex[:6]}", "--chat-id", str(unique_chat_id()),
              "--calendar-id", "c@example.com", "--name", "n")  # fmt: skip
    assert res.returncode != 0
    assert "--no-verify" in res.stderr
