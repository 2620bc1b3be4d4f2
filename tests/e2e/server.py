"""A real `tokenledger serve` process on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
TOKENLEDGER = Path(sys.executable).parent / "tokenledger"
CHEAP_ENV = {"TOKENLEDGER_ARGON2_MEMORY_KIB": "64", "TOKENLEDGER_ARGON2_TIME_COST": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    return os.environ | CHEAP_ENV | {"TOKENLEDGER_DATABASE_URL": database_url} | extra


def run_cli(database_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOKENLEDGER), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(database_url),
        timeout=120,
        check=False,
    )


def add_user(database_url: str, name: str, role: str = "member", password: str | None = None) -> str:
    password = password or f"{name}-password"
    result = run_cli(
        database_url, "users", "add", name, "--role", role, "--password-stdin", stdin=password + "\n"
    )
    assert result.returncode == 0, result.stderr
    return password


@dataclass
class Server:
    database_url: str
    workdir: Path
    workers: int = 1
    usage_window: str = "0"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    admin_password: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"server-{self.port}.stderr"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"server-{self.port}.stdout"

    def start(self, timeout: float = 60.0) -> Server:
        env = cli_env(self.database_url, TOKENLEDGER_USAGE_WINDOW_SECONDS=self.usage_window)
        self.process = subprocess.Popen(
            [str(TOKENLEDGER), "serve", "--port", str(self.port), "--workers", str(self.workers)],
            stdout=self.stdout_path.open("ab"),
            stderr=self.stderr_path.open("ab"),
            env=env,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.stderr_path.read_text()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"server did not become ready:\n{self.stderr_path.read_text()}")
        lines = self.stdout_path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("First start"):
                self.admin_password = lines[i + 2].strip()
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def logs(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()
