"""`autodispatch backup DIR` and `autodispatch restore DIR` (docs/backup.md).

backup DIR     the app database, the Temporal dev server's SQLite and DATA_DIR's own keys, while `up` runs
restore DIR    an empty AUTODISPATCH_DATA_DIR filled from a backup; `up` then carries on from it
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autodispatch.settings import Settings, SettingsError

Handler = Callable[[argparse.Namespace, Settings], int]


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch.backup import BackupError, backup

    try:
        summary = backup(settings, Path(args.directory))
    except BackupError as exc:
        raise SettingsError(f"backup: {exc}") from exc
    print(json.dumps(summary.to_json()))
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from autodispatch.backup import BackupError, restore

    try:
        summary = restore(settings, Path(args.directory))
    except BackupError as exc:
        raise SettingsError(f"restore: {exc}") from exc
    print(json.dumps(summary.to_json()))
    return 0


def add_commands(sub: Any) -> dict[str, Handler]:
    b = sub.add_parser("backup", help="back up the embedded database and Temporal while the stack runs")
    b.add_argument("directory", help="a new (or empty) directory for the backup")
    r = sub.add_parser("restore", help="fill an empty AUTODISPATCH_DATA_DIR from a backup")
    r.add_argument("directory", help="a directory written by `autodispatch backup`")
    return {"backup": cmd_backup, "restore": cmd_restore}
