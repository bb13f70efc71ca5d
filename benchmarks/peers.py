"""Other proxies measured beside the router: nginx (C, the ceiling of a proxy on this box) and,
with ``--peers``, the LiteLLM proxy (the Python peer). Both live outside the project's venv, in
the tools cache (``~/.cache/lmrouter-bench``, or ``$LMROUTER_BENCH_TOOLS``), and point at the
same fake upstream as every other target.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.procs import Proc, free_port
from benchmarks.targets import OPERATOR_KEY, Skip, Target

# 1.108.0: the newest release whose `proxy` extra resolves from PyPI alone. 1.108.14 pins
# litellm-proxy-extras==0.4.110.post1 and 1.110.x litellm-proxy==1.110.x, neither published.
LITELLM_VERSION = "1.108.0"

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
    keepalive 1024;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
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

LITELLM_CONFIG = """\
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench-upstream
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: sk-upstream
  - model_name: bench-slow
    litellm_params:
      model: openai/bench-slow-upstream
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: sk-upstream
general_settings:
  master_key: {key}
litellm_settings:
  telemetry: false
"""

# No database (no DATABASE_URL), no network at start (the bundled price map, not a download),
# errors only in the log.
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOG": "ERROR",
    "DISABLE_ADMIN_UI": "True",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
}


# -- nginx ------------------------------------------------------------------------------------


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


def start_nginx(workdir: Path, cpus: str | None, upstream_port: int, tools: Path) -> Target:
    binary = find_nginx(tools)
    if binary is None:
        raise Skip("nginx is not installed and apt-get could not fetch it")
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


# -- LiteLLM ----------------------------------------------------------------------------------


def ensure_litellm(tools: Path) -> Path:
    """The ``litellm`` command of a venv of its own under ``tools`` (created with this Python's
    base interpreter, then ``pip install 'litellm[proxy]==VERSION'``); Skip with pip's own error
    when that fails."""
    venv = tools / "litellm"
    binary = venv / "bin" / "litellm"
    marker = venv / f".installed-{LITELLM_VERSION}"
    if binary.exists() and marker.exists():
        return binary
    base = getattr(sys, "_base_executable", None) or sys.executable
    print(
        f"LiteLLM not found: pip install 'litellm[proxy]=={LITELLM_VERSION}' into {venv} "
        "(a few minutes, about 750 MB)",
        file=sys.stderr,
    )
    if not (venv / "bin" / "python").exists():
        made = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True)
        if made.returncode != 0:
            raise Skip(f"python -m venv {venv} failed: {made.stderr.strip()[-300:]}")
    cmd = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        f"litellm[proxy]=={LITELLM_VERSION}",
    ]
    env = {**os.environ, "PIP_CONSTRAINT": ""}  # the project's lock is not LiteLLM's
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0 or not binary.exists():
        errors = [ln for ln in out.stderr.splitlines() if ln.startswith("ERROR")]
        raise Skip(
            f"`pip install 'litellm[proxy]=={LITELLM_VERSION}'` failed (exit {out.returncode}): "
            + (" / ".join(errors[-2:]) or out.stderr.strip()[-300:])
        )
    marker.touch()
    return binary


def start_litellm(workdir: Path, cpus: str | None, upstream_port: int, tools: Path) -> Target:
    binary = ensure_litellm(tools)
    port = free_port()
    folder = workdir / "litellm"
    folder.mkdir(exist_ok=True)
    config = folder / "config.yaml"
    config.write_text(LITELLM_CONFIG.format(upstream_port=upstream_port, key=OPERATOR_KEY))
    proc = Proc(
        "litellm",
        [
            str(binary),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        workdir / "litellm.log",
        cpus=cpus,
        cwd=folder,
        env=LITELLM_ENV,
    )
    return Target("litellm", port, [proc], version=f"litellm {LITELLM_VERSION}", role="peer")
