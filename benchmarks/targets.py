"""What is measured: the upstream, and the targets put in front of it (or not, for ``direct``).

The router runs as one target per plugin set:

- ``router-bare``: pass-through only. Every installed plugin but the ``openai`` provider is
  disabled, and requests carry an operator key (no accounts, no credits, no rate limit).
- ``router-full``: ``accounts`` + ``credits`` + ``ratelimit`` on SQLite, set up with the real CLI
  (``lmrouter users add``, ``keys create``, ``credits grant``) and driven with that user's key,
  so every request is authenticated, admitted by the rate limiter, holds and settles credits.
- ``router-money``: the money path alone, ``accounts`` + ``credits`` set up the same way, no
  rate limiter: its ratio to ``router-bare`` is what issue #4's target is about.
- ``router-ratelimit``: ``router-bare`` plus ``ratelimit`` (limits set but never binding), with
  the operator key: its ratio to ``router-bare`` is issue #5's.
- ``router-full-pg``: ``router-full`` on PostgreSQL + Redis (the store, the credit holds and
  the rate limits shared, as several hosts run it), both servers local and started for the run
  (their CPU counts as the target's); ``router-full-pg-2w`` the same with two workers.
- ``router-otel``: ``router-bare`` plus ``otel``, a trace per request exported over OTLP/HTTP to
  a local collector (``benchmarks.otlp_sink``, its own process, not counted as the router's): its
  ratio to ``router-bare`` is what tracing costs (issue #17).

When one of a set's plugins is missing or fails, the target is skipped with the reason: a
benchmark of a router without them would be a different benchmark under the same name.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procs import Proc, free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CHAT_PATH = "/v1/chat/completions"
OPERATOR_KEY = "sk-bench"
FULL_PLUGINS = ("accounts", "credits", "ratelimit")
# Plugin sets by target suffix (``router-SET``), beyond the provider every set keeps.
PLUGIN_SETS: dict[str, tuple[str, ...]] = {
    "bare": (),
    "full": FULL_PLUGINS,
    "money": ("accounts", "credits"),
    "ratelimit": ("ratelimit",),
    "otel": ("otel",),
    "full-pg": (*FULL_PLUGINS, "postgres", "redis"),
    "full-pg-2w": (*FULL_PLUGINS, "postgres", "redis"),
}
WORKERS = {"full-pg-2w": 2}  # by set; 1 otherwise
PROVIDER_PLUGIN = "openai"
BENCH_USER = "bench@example.com"
GRANT_USD = "1000000"


class Skip(Exception):
    """A target that cannot run on this machine; the message says why."""


@dataclass
class Target:
    name: str
    port: int
    procs: list[Proc] = field(default_factory=list)
    version: str = ""
    key: str = OPERATOR_KEY
    role: str = "baseline"  # baseline | router | peer
    config: Path | None = None  # the router's config, for CLI calls after the run
    # Processes the target needs but whose cost is not its own (router-otel's collector): stopped
    # with it, never measured with it.
    helpers: list[Proc] = field(default_factory=list)
    collector: int | None = None  # that collector's port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHAT_PATH}"


# -- the upstream -------------------------------------------------------------------------------


def start_upstream(
    workdir: Path,
    cpus: str | None,
    *,
    workers: int,
    chunks: int,
    kind: str = "builtin",
    pacing: list[str] | None = None,
) -> Target:
    """``builtin``: benchmarks.upstream. ``fake-openai``: lmrouter.testing.fake_openai, the
    faithful (and slower, aiohttp.web) fake the tests use, with ``chunks`` 4-character deltas
    (it has no slow profile, so the many-streams run then streams without delays)."""
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
        cmd += pacing or []
    proc = Proc(
        "upstream",
        cmd,
        workdir / "upstream.log",
        cpus=cpus,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
    )
    return Target("upstream", port, [proc])


# -- the bare aiohttp proxy -------------------------------------------------------------------


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


# -- the router -------------------------------------------------------------------------------

ROUTER_CONFIG = """\
[server]
log_requests = false
[storage]
url = "sqlite:///bench.db"
[plugins]
disabled = {disabled}
[auth]
keys = ["{operator_key}"]
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
[[models]]
id = "bench-slow"
  [[models.routes]]
  provider = "up"
  model = "bench-slow-upstream"
  price = {{ input = 0.15, output = 0.60 }}
"""

# Sections of the full plugin set, written when the plugin claims the section. The limits are
# far above what one worker can reach, but not 0 (= unlimited), so the limiter does its work on
# every request instead of stepping aside.
FULL_SECTIONS = {
    "accounts": "",
    "credits": "expire_after_days = 365\n",
    "ratelimit": "rpm = 100000000\ntpm = 100000000000\nmax_concurrent = 100000\n",
}


def installed_plugins() -> dict[str, str]:
    """Entry-point name -> distribution of every installed ``lmrouter.plugins`` plugin."""
    found = {}
    for ep in importlib.metadata.entry_points(group="lmrouter.plugins"):
        found[ep.name] = ep.dist.name if ep.dist else "?"
    return found


def claimed_sections(enabled: tuple[str, ...]) -> set[str]:
    """The config sections the given plugins claim, asked through the public hook."""
    from lmrouter import gateway, plugins

    off = [name for name in installed_plugins() if name not in enabled]
    return set(gateway.config_sections(plugins.build(off)))


def _cli(config: Path, *args: str) -> str:
    """One ``lmrouter`` admin command on the bench config; its stdout, or Skip with the reason."""
    binary = Path(PYTHON).with_name("lmrouter")
    cmd = [str(binary)] if binary.exists() else [PYTHON, "-m", "lmrouter.cli"]
    cmd += list(args)
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
        cwd=config.parent,
        env={**os.environ, "LMROUTER_CONFIG": str(config)},  # §4: the default for --config
    )
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise Skip(f"`lmrouter {' '.join(args)}` exited {out.returncode}: {' / '.join(tail)}")
    return out.stdout


def start_router(
    workdir: Path, cpus: str | None, upstream_port: int, plugin_set: str = "bare"
) -> Target:
    """``router-SET`` for a set of :data:`PLUGIN_SETS` (see the module docstring); raises Skip
    when the set's plugins are not installed or their setup commands fail."""
    started: list[Proc] = []  # its servers and collector, stopped if the router cannot start
    try:
        return _start_router(workdir, cpus, upstream_port, plugin_set, started)
    except BaseException:
        for proc in reversed(started):
            proc.stop()
        raise


def _start_router(
    workdir: Path, cpus: str | None, upstream_port: int, plugin_set: str, started: list[Proc]
) -> Target:
    name = f"router-{plugin_set}"
    installed = installed_plugins()
    keep: tuple[str, ...] = (PROVIDER_PLUGIN,)
    if PROVIDER_PLUGIN not in installed:
        raise Skip(f"the {PROVIDER_PLUGIN!r} provider plugin is not installed")
    wanted = PLUGIN_SETS[plugin_set]
    missing = [p for p in wanted if p not in installed]
    if missing:
        raise Skip(
            "plugins not installed: "
            + ", ".join(f"{p} (pip install -e plugins/{p})" for p in missing)
        )
    keep += wanted
    disabled = sorted(set(installed) - set(keep))
    config = workdir / name / "lmrouter.toml"
    config.parent.mkdir(exist_ok=True)
    text = ROUTER_CONFIG.format(
        upstream_port=upstream_port,
        operator_key=OPERATOR_KEY,
        disabled=json.dumps(disabled),
    )
    key = OPERATOR_KEY
    if wanted:
        try:
            claimed = claimed_sections(keep)
        except Exception as exc:  # a plugin that fails to load: say which and why
            raise Skip(f"the plugins failed to load: {exc!r}") from None
        for section, body in FULL_SECTIONS.items():
            if section in claimed and section in wanted:
                text += f"[{section}]\n{body}"
    procs: list[Proc] = []
    if "postgres" in wanted:
        store, redis, procs = start_backends(workdir / name, cpus)
        started += procs
        text = text.replace('url = "sqlite:///bench.db"', f'url = "{store}"')
        text += f'[redis]\nurl = "{redis}"\n'
        text = text.replace(
            "max_concurrent = 100000\n", 'max_concurrent = 100000\nbackend = "redis"\n'
        )
    helpers: list[Proc] = []
    collector = None
    if "otel" in wanted:
        collector = free_port()
        cmd = [PYTHON, "-m", "benchmarks.otlp_sink", "--port", str(collector)]
        log = workdir / f"{name}-collector.log"
        helpers.append(Proc("otlp-sink", cmd, log, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}))
        started += helpers
        text += f'[otel]\nendpoint = "http://127.0.0.1:{collector}"\n'
    config.write_text(text)
    if "accounts" in wanted:  # a user's key, so that requests are authenticated and metered
        _cli(config, "users", "add", BENCH_USER)
        lines = _cli(config, "keys", "create", BENCH_USER, "--name", "bench").strip().splitlines()
        if not lines or not lines[-1].strip():
            raise Skip("`lmrouter keys create` printed no key")
        key = lines[-1].strip()
        if "credits" in wanted:
            _cli(config, "credits", "grant", BENCH_USER, GRANT_USD, "--note", "benchmark")
    port = free_port()
    binary = Path(PYTHON).with_name("lmrouter")
    cmd = [str(binary)] if binary.exists() else [PYTHON, "-m", "lmrouter.cli"]
    cmd += ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(WORKERS.get(plugin_set, 1))]
    proc = Proc(
        name,
        cmd,
        workdir / f"{name}.log",
        cpus=cpus,
        cwd=config.parent,
        env={"LMROUTER_LOG_FORMAT": "json"},
    )
    target = Target(name, port, [proc, *procs], key=key, role="router", config=config)
    target.helpers, target.collector = helpers, collector
    return target


def start_backends(workdir: Path, cpus: str | None) -> tuple[str, str, list[Proc]]:
    """A PostgreSQL server (initdb, then ``postgres`` in the foreground: a Proc like the
    others, stopped with the target) and a ``redis-server``; their URLs. Skip when the binaries
    are missing."""
    import shutil
    import time

    from lmrouter.testing import servers

    try:
        pg_bin = servers._pg_bin()
    except servers.MissingServer as exc:
        raise Skip(str(exc)) from None
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise Skip("redis-server is not installed (sudo apt-get install redis-server)")
    data = workdir / "pg"
    as_root = os.geteuid() == 0
    # As root, run as the postgres user (initdb and postgres refuse root) through an exec in
    # this process group (runuser would start another one: its CPU would escape the count).
    become = (
        "import os, pwd, sys; u = pwd.getpwnam('postgres'); os.setgid(u.pw_gid); "
        "os.setuid(u.pw_uid); os.execv(sys.argv[1], sys.argv[1:])"
    )
    sudo = [PYTHON, "-c", become] if as_root else []
    workdir.mkdir(parents=True, exist_ok=True)
    if as_root:  # the postgres user must reach its directory through the run's (mode 0700)
        workdir.parent.chmod(0o711)
        shutil.chown(workdir, "postgres", "postgres")
    subprocess.run(
        [*sudo, str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pg_port, redis_port = free_port(), free_port()
    # Durable as a production server would be (fsync on); the tests' servers turn it off.
    postgres = Proc(
        "postgres",
        [*sudo, str(pg_bin / "postgres"), "-D", str(data), "-p", str(pg_port), "-k", str(workdir),
         "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
        workdir / "postgres.log", cpus=cpus,
    )  # fmt: skip
    redis = Proc(
        "redis",
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        workdir / "redis.log", cpus=cpus,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while subprocess.run(
        [str(pg_bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(pg_port)], capture_output=True
    ).returncode:
        if time.monotonic() > deadline or not postgres.alive():
            raise Skip(f"PostgreSQL did not start: {postgres.tail()}")
        time.sleep(0.1)
    return (
        f"postgresql://postgres@127.0.0.1:{pg_port}/postgres",
        f"redis://127.0.0.1:{redis_port}/0",
        [postgres, redis],
    )


def credits_spent(target: Target) -> str | None:
    """USD the metered router's user spent in the run (the grant minus the balance), read with
    ``lmrouter credits show --json``: proof that credits were metered, or None."""
    if target.config is None or "credits" not in PLUGIN_SETS[target.name.removeprefix("router-")]:
        return None
    try:
        doc = json.loads(_cli(target.config, "credits", "show", BENCH_USER, "--json"))
    except (Skip, ValueError, subprocess.TimeoutExpired):
        return None
    from decimal import Decimal, InvalidOperation

    try:
        return str(Decimal(GRANT_USD) - Decimal(str(doc["balance_usd"])))
    except (KeyError, TypeError, InvalidOperation):
        return None


def spans_exported(target: Target) -> int | None:
    """Spans router-otel's collector received in the run: proof that tracing ran, or None."""
    if target.collector is None:
        return None
    url = f"http://127.0.0.1:{target.collector}/count"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(json.loads(response.read())["spans"])
    except (OSError, ValueError, KeyError):
        return None
