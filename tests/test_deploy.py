"""The deployment recipes stay honest (the systemd unit, the Dockerfile), instances starting together
against one PostgreSQL migrate it once, and /healthz follows a database that goes away."""

from __future__ import annotations

import configparser
import inspect
import json
import multiprocessing
import shlex
import shutil
import socket
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import typer
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot import cli
from bot.db.engine import MIGRATION_LOCK, SCHEMA_KEY, head_revision, make_engine, migrate
from bot.db.scratch import scratch_schema
from bot.slack.http import SlackWSGI
from bot.store import Book
from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parents[1]
needs_pg = pytest.mark.skipif(not PG_URL, reason="KEEPWELL_TEST_DATABASE_URL is not set")


def commands() -> set[str]:
    group = typer.main.get_command(cli.app)
    return set(group.commands)  # type: ignore[attr-defined]


def serve_default_port() -> int:
    return int(inspect.signature(cli.serve).parameters["port"].default)


# the systemd unit --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((ROOT / "deploy" / "keepwell.service").read_text())
    return parser


def test_the_unit_starts_an_existing_command_of_the_installed_script(unit):
    argv = shlex.split(unit["Service"]["ExecStart"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(argv[0]).name in scripts and argv[0].startswith("/")  # systemd wants an absolute path
    assert argv[1] in commands() and argv[1] in ("run", "serve")


def test_the_unit_is_hardened_and_writes_only_its_data_folder(unit):
    service = unit["Service"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": ""}.items():
        assert service[key] == value, key
    assert service["User"] not in ("", "root")
    assert service["ReadWritePaths"] == service["WorkingDirectory"] == f"/var/lib/{service['StateDirectory']}"
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert service["EnvironmentFile"] in docs  # the file the docs tell you to write
    assert f"sqlite:///{service['WorkingDirectory']}/keepwell.db" in docs  # the book: in the writable folder
    assert "ExecStart=" not in docs or service["ExecStart"] in docs


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_systemd_knows_every_directive_of_the_unit(tmp_path):
    keepwell = shutil.which("keepwell") or str(Path(cli.__file__).parents[1] / ".venv" / "bin" / "keepwell")
    text_ = (ROOT / "deploy" / "keepwell.service").read_text().replace("/opt/keepwell/bin/keepwell", keepwell)
    (tmp_path / "keepwell.service").write_text(text_)
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "keepwell.service")],
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in done.stderr.splitlines() if "keepwell.service" in line]
    assert not problems, problems


# the container image -----------------------------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def test_the_image_serves_http_on_the_default_port_as_a_non_root_user():
    steps = dockerfile()
    names = [name for name, _ in steps]
    args = dict(steps)  # the last of each
    assert args["FROM"] == "python:3.11-slim"
    assert json.loads(args["CMD"]) == ["keepwell", "serve", "--host", "0.0.0.0"] and "serve" in commands()
    assert args["EXPOSE"] == str(serve_default_port())
    assert f"http://127.0.0.1:{serve_default_port()}/healthz" in args["HEALTHCHECK"]
    assert args["USER"] not in ("root", "0") and names.index("USER") < names.index("CMD")
    assert any(name == "RUN" and "pip install ." in value for name, value in steps)


def test_the_image_copies_everything_the_package_is_built_from_and_dockerignore_keeps_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", project["project"]["readme"], *wheel["packages"], *wheel["force-include"]}
    copied = set()
    for name, value in dockerfile():
        if name == "COPY":
            sources = value.split()[:-1]
            copied |= {s.rstrip("/") for s in sources}
    assert needed <= copied, needed - copied
    assert all((ROOT / source).exists() for source in copied)
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for source in copied:
        assert not any(fnmatch(source, pattern.rstrip("/")) for pattern in ignored), source
    for secret in (".env", ".venv", ".git", "*.db"):
        assert secret in ignored


def test_readme_links_the_deploy_guide():
    assert "(docs/deploy.md)" in (ROOT / "README.md").read_text()


# migrations: several instances starting at once --------------------------------------------------

def _migrate_when_all_are_ready(url: str, ready: Any, results: Any) -> None:
    engine = make_engine(url)
    ready.wait(60)
    try:
        migrate(engine)
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}".splitlines()[0])
    finally:
        engine.dispose()


def revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@needs_pg
def test_instances_starting_together_against_one_postgresql_all_start():
    spawn = multiprocessing.get_context("spawn")
    with scratch_schema(PG_URL or "", prefix="t") as url:
        n = 4
        ready, results = spawn.Barrier(n), spawn.Queue()
        procs = [spawn.Process(target=_migrate_when_all_are_ready, args=(url, ready, results))
                 for _ in range(n)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(30)
        assert outcomes == ["ok"] * n
        assert revision(url) == head_revision()


@needs_pg
def test_a_migration_waits_for_the_one_under_way():
    with scratch_schema(PG_URL or "", prefix="t") as url:
        holder = make_engine(url)
        done: list[str] = []

        def start() -> None:
            engine = make_engine(url)
            try:
                migrate(engine)
                done.append("ok")
            except Exception as exc:
                done.append(repr(exc))
            finally:
                engine.dispose()

        with holder.connect() as conn:  # stands for an instance migrating right now
            conn.execute(text(f"SELECT pg_advisory_lock(:key, {SCHEMA_KEY})"), {"key": MIGRATION_LOCK})
            waiting = threading.Thread(target=start)
            waiting.start()
            waiting.join(1.5)
            assert waiting.is_alive() and revision(url) is None  # it waits; it does not race
            conn.execute(text(f"SELECT pg_advisory_unlock(:key, {SCHEMA_KEY})"), {"key": MIGRATION_LOCK})
        waiting.join(60)
        holder.dispose()
        assert done == ["ok"] and revision(url) == head_revision()


# /healthz against a real database that goes away ----------------------------------------------

class Proxy:
    """A TCP forwarder to the database that can be switched off (the database 'goes away')."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port, self.listener = listener.getsockname()[1], listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        for s in [self.listener, *self.sockets] if self.listener else self.sockets:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # a close alone leaves a socket blocked in accept() listening
            s.close()
        self.sockets.clear()


@contextmanager
def proxied(url: str) -> Iterator[tuple[str, Proxy]]:
    real = make_url(url)
    proxy = Proxy(real.host or "127.0.0.1", real.port or 5432)
    proxy.start()
    try:
        yield real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    finally:
        proxy.stop()


def healthz(wsgi: SlackWSGI) -> tuple[int, dict[str, Any]]:
    statuses: list[str] = []
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz"}
    body = b"".join(wsgi(env, lambda status, headers, *exc: statuses.append(status)))
    return int(statuses[0][:3]), json.loads(body)


@needs_pg
def test_healthz_is_503_while_postgresql_is_unreachable_and_200_when_it_is_back():
    with scratch_schema(PG_URL or "", prefix="t") as url, proxied(url + "&connect_timeout=3") as (via, proxy):
        engine = make_engine(via)
        migrate(engine)
        wsgi = SlackWSGI(None, "secret", Book(engine).ping)  # type: ignore[arg-type]  # no Slack needed
        assert healthz(wsgi) == (200, {"ok": True, "database": "reachable"})
        proxy.stop()  # the pooled connection breaks, and new ones are refused
        assert healthz(wsgi) == (503, {"ok": False, "database": "unreachable"})
        assert healthz(wsgi)[0] == 503
        proxy.start()
        assert healthz(wsgi) == (200, {"ok": True, "database": "reachable"})
        engine.dispose()
