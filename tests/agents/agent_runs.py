"""The real coding agents against the real router: Codex CLI and Claude Code, as npm installs
them (``make agents``: ``tests/agents/package-lock.json`` into ``.cache/agents``), each with its
default settings except what points it at the router, on an OpenAI, an Anthropic and a Gemini
route backed by the fake upstreams.

The task every run does: "What does hello.py print?" in a scratch git repository. The fakes
are scripted to answer with one tool call (Codex: ``exec_command`` ``cat hello.py``; Claude
Code: ``Read`` of the file), which the agent really runs, and then with :data:`ANSWER`; the
request after the call carries the file's text back (what proves the round trip).

Used by ``tests/test_agents_e2e.py`` and by ``tests/agents/capture.py``, which records what the
agents send (``tests/fixtures/*_request.json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmrouter.testing import fake_anthropic, fake_gemini, fake_openai
from lmrouter.testing.fakeserver import ToolCall
from lmrouter.testing.server import RouterServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
AGENTS_DIR = Path(os.environ.get("LMROUTER_AGENTS_DIR", ROOT / ".cache" / "agents"))
"""Where ``make agents`` installs the pinned CLIs (its ``node_modules``)."""
PINS: dict[str, str] = json.loads((HERE / "package.json").read_text())["dependencies"]

KEY = "sk-agents-e2e"
"""The router's operator key, which the agents send as their API key."""
PROMPT = "What does hello.py print?"
HELLO = 'print("Hello from the router test")\n'
ANSWER = "hello.py prints: Hello from the router test"
"""The fakes' final answer, which each agent must print."""
TIMEOUT = 90.0
"""Seconds a run may take (within pytest's 120 s; runs take seconds: a bound for a hung CLI)."""


@dataclass(frozen=True)
class Route:
    model: str
    """The router's model id, which the agent is told to use."""
    fake: str
    """Which fake serves it: ``openai``, ``anthropic`` or ``google``."""
    upstream: str
    """The provider's model name."""
    extra: str = ""
    """More ``[[models]]`` keys."""


@dataclass(frozen=True)
class Agent:
    name: str
    package: str
    bin: str
    tool: str
    """The tool the fakes call, and how its arguments read ``hello.py``."""
    routes: tuple[Route, ...]

    def call(self, project: Path) -> ToolCall:
        if self.tool == "exec_command":
            return ToolCall("exec_command", {"cmd": "cat hello.py"})
        return ToolCall("Read", {"file_path": str(project / "hello.py")})


ANTHROPIC = Route("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5")
GEMINI = Route("google/gemini-2.5-flash", "google", "gemini-2.5-flash")
CODEX = Agent(
    "codex",
    "@openai/codex",
    "codex",
    "exec_command",
    (Route("openai/gpt-5-codex", "openai", "gpt-5-codex"), ANTHROPIC, GEMINI),
)
# gpt-4o-mini's output limit as `lmrouter init` writes it: Claude Code asks every model for
# 32000 tokens, which the router clamps to the model's cap. An alias Claude Code does not know
# as Claude's, on Anthropic: it gets what Claude Code sends other models (a system message in
# `messages`, which Anthropic refuses).
CLAUDE_CODE = Agent(
    "claude-code",
    "@anthropic-ai/claude-code",
    "claude",
    "Read",
    (
        Route("openai/gpt-4o-mini", "openai", "gpt-4o-mini", "max_output_tokens = 16384\n"),
        ANTHROPIC,
        GEMINI,
        Route("team/smart", "anthropic", "claude-opus-4-5"),
    ),
)
AGENTS = (CODEX, CLAUDE_CODE)


def installed_version(agent: Agent) -> str | None:
    try:
        manifest = AGENTS_DIR / "node_modules" / agent.package / "package.json"
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def executable(agent: Agent) -> Path:
    return AGENTS_DIR / "node_modules" / ".bin" / agent.bin


def missing() -> str | None:
    """Why the agents cannot run here (a skip's reason), or ``None`` when they can."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not installed: the real Codex CLI and Claude Code come from npm"
    for agent in AGENTS:
        if installed_version(agent) is None or not executable(agent).exists():
            return f"{agent.package} not installed in {AGENTS_DIR}: run `make agents`"
    return None


def stale() -> list[str]:
    """Installed agents whose version is not the pinned one (an old ``make agents``)."""
    return [
        f"{a.package} {installed_version(a)} installed, {PINS[a.package]} pinned: make agents"
        for a in AGENTS
        if installed_version(a) != PINS[a.package]
    ]


def router_config(urls: dict[str, str]) -> str:
    text = f'[auth]\nkeys = ["{KEY}"]\n'
    for kind, url in urls.items():
        text += f'[providers.{kind}]\ntype = "{kind}"\nbase_url = "{url}"\n'
    routes = {route.model: route for agent in AGENTS for route in agent.routes}
    for route in routes.values():
        text += (
            f'[[models]]\nid = "{route.model}"\n{route.extra}'
            f'[[models.routes]]\nprovider = "{route.fake}"\nmodel = "{route.upstream}"\n'
        )
    return text


@dataclass
class Stack:
    """The three fakes and the router in front of them."""

    fakes: dict[str, Any] = field(
        default_factory=lambda: {
            "openai": fake_openai.FakeOpenAI(),
            "anthropic": fake_anthropic.FakeAnthropic(),
            "google": fake_gemini.FakeGemini(),
        }
    )
    router: RouterServer | None = None

    def script(self, agent: Agent, route: Route, project: Path) -> None:
        """This route's fake answers: one call to the agent's tool, then :data:`ANSWER`."""
        module = {"openai": fake_openai, "anthropic": fake_anthropic, "google": fake_gemini}
        behavior = module[route.fake].Behavior(text=ANSWER, call=agent.call(project))
        self.fakes[route.fake].script(route.upstream, behavior)

    def requests(self, route: Route) -> list[Any]:
        """What reached the route's fake for its model, in order."""
        fake = self.fakes[route.fake]
        return [
            r
            for r in fake.requests
            if (r.json or {}).get("model") == route.upstream or f"/{route.upstream}:" in r.path
        ]


@contextlib.contextmanager
def stack(router_env: dict[str, str] | None = None) -> Iterator[Stack]:
    result = Stack()
    with contextlib.ExitStack() as stack_:
        urls = {kind: stack_.enter_context(f.run_in_thread()) for kind, f in result.fakes.items()}
        result.router = stack_.enter_context(RouterServer(router_config(urls), env=router_env))
        yield result


def project(root: Path) -> Path:
    """A scratch git repository with ``hello.py`` (both agents expect a repository)."""
    path = root / "project"
    path.mkdir()
    (path / "hello.py").write_text(HELLO)
    subprocess.run(["git", "init", "--quiet", str(path)], check=True)
    return path


def command(
    agent: Agent, route: Route, base_url: str, home: Path
) -> tuple[list[str], dict[str, str]]:
    """The agent's command line and environment: a fresh home, the router's URL and key, its
    defaults otherwise. Nothing of the caller's environment but ``PATH`` and the locale leaks
    in (no real keys, no user config)."""
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TERM": "dumb",
    }
    exe = str(executable(agent))
    if agent is CODEX:
        # Codex reads its base URL from config.toml (0.171 ignores OPENAI_BASE_URL) and, for
        # `codex exec`, an API key from CODEX_API_KEY.
        codex_home = home / ".codex"
        codex_home.mkdir(exist_ok=True)
        (codex_home / "config.toml").write_text(f'openai_base_url = "{base_url}/v1"\n')
        env |= {"CODEX_HOME": str(codex_home), "CODEX_API_KEY": KEY}
        return [exe, "exec", "--model", route.model, PROMPT], env
    # Updates and telemetry off: a CI runner with internet access must not have the CLI
    # replace itself mid-suite or report to Anthropic (neither changes what reaches the API).
    env |= {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": KEY,
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    return [exe, "-p", PROMPT, "--model", route.model], env


def run(
    agent: Agent, route: Route, base_url: str, root: Path, workdir: Path
) -> subprocess.CompletedProcess[str]:
    argv, env = command(agent, route, base_url, root / "home")
    return subprocess.run(
        argv,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
