"""A live ``archdb serve`` for the client tests: the real binary (``ARCHDB_BIN``, default
``target/debug/archdb``) on a free loopback port, over a fresh database on ``DATABASE_URL``'s
server (or archdb's embedded cluster in a temporary folder), loaded with the bundled LEMUR sample
and the NAS-Bench-201 test subset by ``archdb import``. No starter set is seeded; the bundled
NB201 predictor is registered (``--seed-dir`` holding only ``predictor/``)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

REPO = Path(__file__).resolve().parents[3]


def _binary() -> str:
    binary = os.environ.get("ARCHDB_BIN") or str(REPO / "target" / "debug" / "archdb")
    if not Path(binary).is_file():
        raise RuntimeError(f"no archdb binary at {binary}: run `cargo build` or set ARCHDB_BIN")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One running ``archdb serve``."""

    def __init__(self, tmp: Path, token: str | None = None):
        self.env = dict(os.environ)
        self.env.pop("ARCHDB_API_TOKEN", None)
        base = os.environ.get("DATABASE_URL")
        if base:
            parts = urlsplit(base)
            # Named like archdb's test databases, which its test harness drops after 3 hours.
            name = f"archdb_test_{os.getpid()}_{time.time_ns()}_{uuid.uuid4().hex[:6]}"
            self.env["DATABASE_URL"] = urlunsplit(parts._replace(path="/" + name))
        else:
            self.env["ARCHDB_DATA_DIR"] = str(tmp / "archdb-data")
        self.env["RUST_LOG"] = "archdb=warn"
        seed = tmp / "seed"
        seed.mkdir(exist_ok=True)
        if not (seed / "predictor").exists():
            (seed / "predictor").symlink_to(REPO / "data" / "predictor")
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.token = token
        self.binary = _binary()
        self.process = None
        self.seed = seed

    def run(self, *args: str) -> str:
        done = subprocess.run([self.binary, *args], env=self.env, capture_output=True,
                              text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"archdb {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def start(self) -> None:
        args = [self.binary, "serve", "--addr", self.url.removeprefix("http://"),
                "--seed-dir", str(self.seed)]
        env = dict(self.env)
        if self.token:
            env["ARCHDB_API_TOKEN"] = self.token
        self.process = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"archdb serve exited:\n{self.process.stderr.read()}")
            try:
                if requests.get(self.url + "/readyz", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError("archdb serve did not become ready in 120 s")

    def wait_for_predictor(self) -> None:
        """The bundled predictor is registered in the background after start."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            answer = requests.get(self.url + "/v1/predictors", timeout=60).json()
            if any(p["active"] for p in answer["predictors"]):
                return
            time.sleep(0.5)
        raise RuntimeError("the bundled predictor was not registered in 120 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("archdb"))
    srv.run("import", "lemur", str(REPO / "data" / "lemur-sample"))
    srv.run("import", "lemur-onnx", str(REPO / "data" / "lemur-sample" / "onnx"))
    srv.run("import", "nb201", str(REPO / "tests" / "fixtures" / "nb201"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def token_server(tmp_path_factory):
    """A second, token-protected server with an empty database."""
    srv = Server(tmp_path_factory.mktemp("archdb-token"), token="s3cret-token")
    srv.start()
    yield srv
    srv.stop()
