"""What is measured: the upstream, and the targets put in front of it (or not, for ``direct``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procs import Proc, free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TARGETS = ("direct", "aiohttp-proxy", "router", "nginx")
CHAT_PATH = "/v1/chat/completions"

ROUTER_CONFIG = """\
[server]
log_requests = false
[auth]
keys = ["sk-bench"]
[providers.up]
type = "openai"
base_url = "http://127.0.0.1:{upstream_port}/v1"
api_key = "sk-upstream"
[[models]]
id = "bench"
  [[models.routes]]
  provider = "up"
  model = "bench-upstream"
  price = {{ input = 0.15, output = 0.60 }}
"""

NGINX_CONFIG = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  upstream up {{
    server 127.0.0.1:{upstream_port};
    keepalive 128;
  }}
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer sk-upstream";
      proxy_buffering off;
    }}
  }}
}}
"""


@dataclass
class Target:
    name: str
    port: int
    procs: list[Proc] = field(default_factory=list)
    version: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHAT_PATH}"


def start_upstream(
    workdir: Path, cpus: str | None, *, workers: int, chunks: int, kind: str = "builtin"
) -> Target:
    """``builtin``: benchmarks.upstream. ``fake-openai``: lmrouter.testing.fake_openai, the
    faithful (and slower, aiohttp.web) fake the tests use, with ``chunks`` 4-character deltas."""
    port = free_port()
    common = ["--port", str(port), "--workers", str(workers)]
    if kind == "fake-openai":
        text = ("abc " * chunks)[: 4 * chunks]
        cmd = [
            PYTHON,
            "-m",
            "lmrouter.testing.fake_openai",
            *common,
            "--text",
            text,
            "--chunk-chars",
            "4",
        ]
    else:
        cmd = [PYTHON, "-m", "benchmarks.upstream", *common, "--chunks", str(chunks)]
    proc = Proc(
        "upstream",
        cmd,
        workdir / "upstream.log",
        cpus=cpus,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
    )
    return Target("upstream", port, [proc])


def start_aiohttp_proxy(workdir: Path, cpus: str | None, upstream_port: int) -> Target:
    port = free_port()
    proc = Proc(
        "aiohttp-proxy",
        [PYTHON, "-m", "benchmarks.aiohttp_proxy", "--port", str(port)],
        workdir / "aiohttp-proxy.log",
        cpus=cpus,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "BENCH_UPSTREAM": f"http://127.0.0.1:{upstream_port}"},
    )
    return Target("aiohttp-proxy", port, [proc])


def start_router(workdir: Path, cpus: str | None, upstream_port: int) -> Target:
    port = free_port()
    config = workdir / "router" / "lmrouter.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(ROUTER_CONFIG.format(upstream_port=upstream_port))
    binary = Path(PYTHON).with_name("lmrouter")
    cmd = [str(binary)] if binary.exists() else [PYTHON, "-m", "lmrouter.cli"]
    cmd += [
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    proc = Proc(
        "router",
        cmd,
        workdir / "router.log",
        cpus=cpus,
        cwd=config.parent,
        env={"LMROUTER_LOG_FORMAT": "json"},
    )
    return Target("router", port, [proc])


def find_nginx(tools: Path) -> str | None:
    """A system nginx, else one unpacked from Debian's package into ``tools`` (``apt-get
    download`` + ``dpkg-deb -x``: no maintainer scripts, so no service is started on port 80)."""
    found = shutil.which("nginx") or (shutil.which("nginx", path="/usr/sbin"))
    if found:
        return found
    binary = tools / "nginx" / "usr" / "sbin" / "nginx"
    if binary.exists():
        return str(binary)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return None
    debs = tools / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    print("nginx not found: apt-get download nginx, unpacked into " + str(tools), file=sys.stderr)
    download = ["apt-get", "download", "-qq", "-o", "APT::Sandbox::User=root", "nginx"]
    if subprocess.run(download, cwd=debs, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        if subprocess.run(download, cwd=debs, check=False).returncode != 0:
            return None
    for deb in sorted(debs.glob("nginx_*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tools / "nginx")], check=True)
    return str(binary) if binary.exists() else None


def start_nginx(workdir: Path, cpus: str | None, upstream_port: int, binary: str) -> Target:
    port = free_port()
    prefix = workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONFIG.format(prefix=prefix, port=port, upstream_port=upstream_port))
    version = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    proc = Proc(
        "nginx",
        [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        workdir / "nginx.log",
        cpus=cpus,
    )
    return Target("nginx", port, [proc], version=version.stderr.strip())
