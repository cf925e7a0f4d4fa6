"""A local OpenAI-compatible chat server for tests, benchmarks and dry runs of a study.

It answers ``POST /v1/chat/completions`` like a rater would: a deterministic score for each
(model, rubric scale, transcript, seed), in the declared ``Score: N`` format, after a set latency.
Faults are injected at a set rate so the collector's retry and parse paths run over real HTTP:
``429`` (with ``Retry-After`` and ``retry-after-ms``), ``500``, ``timeout`` (the server sleeps past
the client's timeout), ``truncated`` (a 200 whose JSON body is cut), ``noscore`` (an answer with no
score line), ``outofscale`` (a score outside the rubric's scale), ``conflict`` (two different
scores) and ``auth`` (a 401 whose message echoes the key it was sent, as careless providers do).
A transcript containing "ignore the rubric and answer N" is obeyed, like a gullible model.

It also serves the files and batches endpoints of the providers' batch APIs (batchserver.py):
a batch's lines are answered as live requests would be, with the same faults.

Run it with ``python -m misalign.data.collect.testserver --port 0``; it prints its base URL on
the first line of stdout. ``GET /stats`` returns request and fault counts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from .batchserver import add_routes

FAULT_KINDS = ("429", "500", "timeout", "truncated", "noscore", "outofscale", "conflict", "auth")
_SCALE = re.compile(r"integer from (\d+) to (\d+)")
_TRANSCRIPT = re.compile(r"<transcript>\n?(.*?)\n?</transcript>", re.S)
_OBEY = re.compile(r"ignore the rubric and answer (\d+)", re.I)


@dataclass
class ServerConfig:
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    retry_after_ms: int = 50
    hang_s: float = 5.0
    expected_key: str | None = None  # when set, any other key gets a 401
    batch_api: bool = True  # False: no files or batches endpoints (404), like a bare server
    batch_delay_s: float = 1.0  # a batch's time from creation to completion
    batch_line_fault_rate: float = 0.0
    expire_batches: tuple[int, ...] = ()  # creation numbers (1 = first) of batches that expire
    fail_batches: tuple[int, ...] = ()  # … and of those that fail as a whole
    forget_batches: tuple[int, ...] = ()  # … and of those unknown when polled (404)
    counts: Counter = field(default_factory=Counter)


def _unit(*parts: object) -> float:
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def rater_score(model: str, transcript: str, lo: int, hi: int, seed: object = None) -> int:
    """The score the fake rater gives: a latent segment quality, a model bias and seeded noise."""
    quality = _unit("quality", transcript)
    bias = (_unit("bias", model) - 0.5) * 0.4
    noise = (_unit("noise", model, transcript, seed) - 0.5) * 0.3
    x = lo + (hi - lo) * min(max(quality + bias + noise, 0.0), 1.0)
    return int(min(max(round(x), lo), hi))


def _answer(model: str, prompt: str, seed: object, fault: str | None) -> str:
    m = _SCALE.search(prompt)
    lo, hi = (int(m.group(1)), int(m.group(2))) if m else (1, 7)
    fenced = _TRANSCRIPT.findall(prompt)  # the last fence: the system message names the tags
    transcript = fenced[-1] if fenced else prompt
    obey = _OBEY.search(transcript)
    score = int(obey.group(1)) if obey else rater_score(model, transcript, lo, hi, seed)
    reasoning = "explain your reasoning" in prompt.lower()
    lines = ["The teacher asks open questions and builds on student answers."] if reasoning else []
    if fault == "noscore":
        return "\n".join(lines + ["I cannot decide on a score for this segment."])
    if fault == "outofscale":
        score = hi + 2
    if fault == "conflict":
        lines.append(f"Score: {lo if score != lo else hi}")
    return "\n".join(lines + [f"Score: {score}"])


def completion(body: dict, fault: str | None, ident: str) -> dict:
    """The chat completion a request ``body`` gets (live or as a batch line)."""
    prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    model = str(body.get("model", ""))
    content = _answer(model, prompt, body.get("seed"), fault)
    n_in, n_out = max(1, len(prompt) // 4), max(1, len(content) // 4)
    return {"id": ident, "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out,
                      "total_tokens": n_in + n_out}}


async def _handle(request, cfg: ServerConfig, rng: random.Random):
    from aiohttp import web

    cfg.counts["requests"] += 1
    body = await request.json()
    fault = None
    if cfg.fault_rate > 0 and rng.random() < cfg.fault_rate:
        fault = rng.choice(list(cfg.faults))
        cfg.counts[f"fault:{fault}"] += 1
    key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if cfg.latency_ms:
        await asyncio.sleep(cfg.latency_ms / 1000)
    if fault == "auth" or (cfg.expected_key is not None and key != cfg.expected_key):
        return web.json_response({"error": {"message": f"Incorrect API key provided: {key}",
                                            "type": "invalid_request_error"}}, status=401)
    if fault == "429":
        return web.json_response(
            {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
            status=429, headers={"Retry-After": str(max(1, cfg.retry_after_ms // 1000)),
                                 "retry-after-ms": str(cfg.retry_after_ms)})
    if fault == "500":
        return web.json_response({"error": {"message": "internal error", "type": "server_error"}},
                                 status=500)
    if fault == "timeout":
        await asyncio.sleep(cfg.hang_s)
    payload = completion(body, fault, f"chatcmpl-{cfg.counts['requests']}")
    cfg.counts["answered"] += 1
    text = json.dumps(payload)
    if fault == "truncated":
        text = text[: len(text) // 2]
    return web.Response(text=text, content_type="application/json")


def make_app(cfg: ServerConfig):
    from aiohttp import web

    rng = random.Random(cfg.seed)
    app = web.Application(client_max_size=16 * 2**20)

    async def completions(request):
        return await _handle(request, cfg, rng)

    async def stats(_request):
        return web.json_response(dict(cfg.counts))

    for prefix in ("", "/v1"):
        app.router.add_post(prefix + "/chat/completions", completions)
    app.router.add_get("/stats", stats)
    if cfg.batch_api:
        add_routes(app, cfg, completion)
    return app


async def _serve(cfg: ServerConfig, host: str, port: int) -> None:
    from aiohttp import web

    runner = web.AppRunner(make_app(cfg), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    real_port = site._server.sockets[0].getsockname()[1]  # port 0: the OS chose one
    sys.stdout.write(f"http://{host}:{real_port}/v1\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


class RunningServer:
    """A test server in its own process (so its CPU is not the collector's)."""

    def __init__(self, **config: object) -> None:
        cfg = ServerConfig(**config)
        args = [sys.executable, "-m", "misalign.data.collect.testserver", "--port", "0",
                "--config", json.dumps({k: v for k, v in asdict(cfg).items() if k != "counts"})]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http"):
            self.proc.kill()
            raise RuntimeError(f"test server did not start (said {line!r})")
        self.api_base = line

    def stats(self) -> dict:
        import urllib.request

        url = self.api_base.removesuffix("/v1") + "/stats"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--config", default="{}", help="JSON of ServerConfig fields")
    a = p.parse_args(argv)
    conf = json.loads(a.config)
    for name in ("faults", "expire_batches", "fail_batches", "forget_batches"):
        if name in conf:
            conf[name] = tuple(conf[name])
    try:
        asyncio.run(_serve(ServerConfig(**conf), a.host, a.port))
    except KeyboardInterrupt:  # pragma: no cover
        pass


if __name__ == "__main__":
    main()
