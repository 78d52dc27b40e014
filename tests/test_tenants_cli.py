"""Tenant onboarding from the command line, run as operators run it: `python -m autodispatch …`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from autodispatch.api.auth import AuthError, authenticate_api_key
from autodispatch.db import system_tx
from tests.api_fixtures import JWT_SECRET, add_tenant_driver, audit_rows
from tests.conftest import Postgres

ROOT = Path(__file__).resolve().parents[1]


async def autodispatch(
    postgres: Postgres, tmp_path: Path, *args: str, jwt_secret: str | None = JWT_SECRET
) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process against the session's PostgreSQL (owner for migrations, app role else)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODISPATCH_")}
    env.update(
        AUTODISPATCH_DATABASE_URL=postgres.owner_dsn,
        AUTODISPATCH_APP_DATABASE_URL=postgres.app_dsn,
        AUTODISPATCH_DATA_DIR=str(tmp_path),
        AUTODISPATCH_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    if jwt_secret is not None:
        env["AUTODISPATCH_JWT_SECRET"] = jwt_secret
    # cwd is the test's directory: no .env of the developer's leaks in.
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "autodispatch", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


Cli = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


@pytest.fixture
def cli(postgres: Postgres, tmp_path: Path) -> Cli:
    async def run(*args: str, jwt_secret: str | None = JWT_SECRET) -> subprocess.CompletedProcess[str]:
        return await autodispatch(postgres, tmp_path, *args, jwt_secret=jwt_secret)

    return run


async def cli_json(cli: Cli, *args: str) -> Any:
    """Run with --json: exactly one line of output, one JSON value."""
    return one_json(ok(await cli(*args, "--json")))


async def create(cli: Cli, prefix: str, *flags: str) -> dict[str, Any]:
    return await cli_json(cli, "tenant", "create", f"{prefix} {uuid.uuid4().hex[:6]}", *flags)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def refused(proc: subprocess.CompletedProcess[str], *words: str, code: int = 1) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one clear line, no traceback
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def one_json(stdout: str) -> Any:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


async def test_tenant_create_json_prints_id_key_and_queue(postgres: Postgres, cli: Cli) -> None:
    name = f"Taxi {uuid.uuid4().hex[:6]}"
    t = await cli_json(cli, "tenant", "create", name, "--tz", "Asia/Almaty", "--currency", "kzt")
    assert {"tenant_id", "api_key", "task_queue"} <= set(t)
    assert (t["name"], t["time_zone"], t["currency"], t["dedicated"]) == (name, "Asia/Almaty", "KZT", False)
    assert t["task_queue"] == "autodispatch"  # the shared queue (Settings.temporal_task_queue)
    principal = await authenticate_api_key(postgres.pool, t["api_key"])
    assert (principal.role, principal.tenant_id) == ("admin", t["tenant_id"])
    actions = {r["action"] for r in await audit_rows(postgres.pool, t["tenant_id"])}
    assert {"tenant_created", "api_key_created"} <= actions
    rows = await audit_rows(postgres.pool, t["tenant_id"], "tenant_created")
    assert rows[0]["workflow_id"] == "admin" and rows[0]["details"]["actor"].startswith("cli:")


async def test_dedicated_tenant_gets_its_own_queue(postgres: Postgres, cli: Cli) -> None:
    t = await create(cli, "Big", "--dedicated")
    assert t["dedicated"] is True and t["task_queue"] == f"tenant-{t['tenant_id']}"
    async with system_tx(postgres.pool) as conn:
        row = await conn.fetchrow(
            "SELECT dedicated, task_queue FROM tenants WHERE tenant_id = $1", t["tenant_id"]
        )
    assert tuple(row) == (True, f"tenant-{t['tenant_id']}")
    # The text form says so too, and prints the key once.
    out = ok(await cli("tenant", "create", f"Big {uuid.uuid4().hex[:6]}", "--dedicated"))
    assert "(dedicated)" in out and "adk." in out and "autodispatch worker --tenant" in out


async def test_bad_input_is_one_clear_line(postgres: Postgres, cli: Cli) -> None:
    name = f"Dup {uuid.uuid4().hex[:6]}"
    ok(await cli("tenant", "create", name))
    refused(await cli("tenant", "create", name), "already taken")
    refused(await cli("tenant", "create", "X", "--tz", "Mars/Base"), "unknown time zone")
    refused(await cli("tenant", "create", "X", "--currency", "euro"), "currency")
    refused(await cli("tenant", "list", "--tenant", "no-such-t"), "no tenant")
    refused(await cli("tenant", "disable", "no-such-t"), "no tenant")
    refused(await cli("apikey", "create", "--tenant", "no-such-t"), "no tenant")
    refused(await cli("apikey", "revoke", "k000000000000"), "no API key")
    refused(await cli("tenant", "disable", "system"), "cannot be disabled")
    refused(await cli("token", "issue", "--role", "admin"), "--tenant")
    refused(await cli("token", "issue", "--role", "admin", "--tenant", name, "--ttl", "soon"), "ttl")


async def test_list_is_scoped_by_tenant_id_or_name(postgres: Postgres, cli: Cli) -> None:
    a = await create(cli, "Alpha")
    b = await create(cli, "Beta")
    for ref in (a["tenant_id"], a["name"]):
        rows = await cli_json(cli, "tenant", "list", "--tenant", ref)
        assert [r["tenant_id"] for r in rows] == [a["tenant_id"]]
        text = ok(await cli("tenant", "list", "--tenant", ref))
        assert a["tenant_id"] in text and b["tenant_id"] not in text and b["name"] not in text
    everything = await cli_json(cli, "tenant", "list")
    assert {a["tenant_id"], b["tenant_id"]} <= {r["tenant_id"] for r in everything}
    assert all("api_key" not in r for r in everything)
    keys = await cli_json(cli, "apikey", "list", "--tenant", a["name"])
    assert [k["tenant_id"] for k in keys] == [a["tenant_id"]]
    assert all("key_hash" not in k and "api_key" not in k for k in keys)


async def test_keys_create_revoke_and_disable(postgres: Postgres, cli: Cli) -> None:
    t = await create(cli, "Keys")
    viewer = await cli_json(
        cli, "apikey", "create", "--tenant", t["name"], "--role", "viewer", "--name", "dash"
    )
    assert (viewer["role"], viewer["name"], viewer["tenant_id"]) == ("viewer", "dash", t["tenant_id"])
    assert (await authenticate_api_key(postgres.pool, viewer["api_key"])).role == "viewer"
    chat = await add_tenant_driver(postgres.pool, t["tenant_id"])
    driver_key = await cli_json(
        cli, "apikey", "create", "--tenant", t["tenant_id"], "--role", "user", "--chat-id", str(chat)
    )
    assert (await authenticate_api_key(postgres.pool, driver_key["api_key"])).chat_id == chat
    refused(await cli("apikey", "create", "--tenant", t["tenant_id"], "--role", "user"), "chat id")

    out = ok(await cli("apikey", "revoke", viewer["key_id"], "--tenant", t["name"]))
    assert viewer["key_id"] in out and "revoked" in out
    with pytest.raises(AuthError) as err:
        await authenticate_api_key(postgres.pool, viewer["api_key"])
    assert err.value.status == 401 and err.value.code == "revoked_api_key"
    # Revoking by the key itself works as well (e.g. a key found in a leaked config).
    ok(await cli("apikey", "revoke", driver_key["api_key"]))
    with pytest.raises(AuthError):
        await authenticate_api_key(postgres.pool, driver_key["api_key"])
    # A key id of one tenant named with another tenant is not found.
    other = await create(cli, "Other")
    refused(await cli("apikey", "revoke", other["key_id"], "--tenant", t["tenant_id"]), "no API key")

    listing = ok(await cli("apikey", "list", "--tenant", t["tenant_id"]))
    assert viewer["key_id"] in listing and "revoked" in listing and viewer["api_key"] not in listing

    ok(await cli("tenant", "disable", t["name"]))
    with pytest.raises(AuthError) as err:
        await authenticate_api_key(postgres.pool, t["api_key"])
    assert err.value.status == 403
    ok(await cli("tenant", "enable", t["tenant_id"]))
    assert (await authenticate_api_key(postgres.pool, t["api_key"])).tenant_id == t["tenant_id"]

    actions = [r["action"] for r in await audit_rows(postgres.pool, t["tenant_id"])]
    assert {"tenant_created", "api_key_revoked", "tenant_disabled", "tenant_enabled"} <= set(actions)
    assert actions.count("api_key_created") == 3 and actions.count("api_key_revoked") == 2


async def test_token_issue(postgres: Postgres, cli: Cli) -> None:
    t = await create(cli, "Tok")
    proc = await cli("token", "issue", "--role", "viewer", "--tenant", t["name"], "--ttl", "15m")
    token = ok(proc).strip()
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="autodispatch-api")
    assert (claims["role"], claims["tenant_id"]) == ("viewer", t["tenant_id"])
    assert 14 * 60 <= claims["exp"] - claims["iat"] <= 15 * 60
    assert "expires" in proc.stderr
    system = await cli_json(cli, "token", "issue", "--role", "system")
    assert (
        jwt.decode(system["token"], JWT_SECRET, algorithms=["HS256"], audience="autodispatch-api")[
            "tenant_id"
        ]
        == "system"
    )
    # Revoked by its jti from the command line (the API then answers 401 token_revoked: tests/test_tokens.py).
    revoked = await cli_json(cli, "token", "revoke", "--tenant", "system", "--jti", system["jti"])
    assert revoked == {"tenant_id": "system", "revoked": system["jti"]}
    refused(await cli("token", "revoke", "--tenant", t["name"]), "--jti J")
    assert "every JWT" in ok(await cli("token", "revoke", "--tenant", t["name"], "--all"))
    refused(await cli("token", "issue", "--role", "system", "--tenant", t["tenant_id"]), "system")
    issued = await audit_rows(postgres.pool, t["tenant_id"], "token_issued")
    assert [r["details"]["role"] for r in issued] == ["viewer"]
    # Without a signing key: one line naming the setting, exit code 2 (a configuration error).
    proc = await cli("token", "issue", "--role", "admin", "--tenant", t["tenant_id"], jwt_secret=None)
    refused(proc, "AUTODISPATCH_JWT_SECRET", code=2)
