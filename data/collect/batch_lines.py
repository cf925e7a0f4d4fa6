"""A batch's output and error lines as the store's attempts (batch.py), and the provider's
batch object read defensively (fields differ a little between providers)."""

from __future__ import annotations

from datetime import datetime

from .parse import parse_answer
from .store import Attempt, now


def line_attempt(line: dict, key: str, n: int, rubric, started: str, latency: float, price,
                 redact) -> tuple[Attempt, str | None]:
    """One line of a batch's output or error file as an attempt, and the request's status
    after it when that is fixed already (auth: failed; others: decided by the caller)."""
    resp, err = line.get("response") or {}, line.get("error")
    code = resp.get("status_code")
    body = resp.get("body") or {}
    if code == 200 and isinstance(body, dict) and body.get("choices"):
        content = (body["choices"][0].get("message") or {}).get("content")
        usage = body.get("usage") or {}
        t_in, t_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        parsed = parse_answer(content, rubric.scale_min, rubric.scale_max)
        a = Attempt(key, n, "scored" if parsed.ok else "parse_failure", True, started, now(),
                    latency, raw_text=redact(content), score=parsed.score,
                    parse_status=parsed.status, tokens_in=t_in, tokens_out=t_out,
                    cost=price.cost(t_in, t_out), http_status=200)
        if not parsed.ok:
            a.error_kind, a.error = f"parse_{parsed.status}", parsed.detail
        return a, None
    if err:
        kind, msg = str(err.get("code") or "batch_error"), str(err.get("message") or "")
    else:
        e = body.get("error") if isinstance(body, dict) else None
        msg = str((e or {}).get("message") or body)[:2000]
        kind = kind_of(code)
    # As live mode: a refused request (auth, bad request) settles; the rest are tried again.
    final = kind in ("auth", "bad_request")
    status = "failed" if final else None
    return (Attempt(key, n, "error", final, started, now(), latency,
                    error_kind=kind, error=redact(msg)[:2000], http_status=code),
            status)


def kind_of(code: int | None) -> str:
    if code == 429:
        return "rate_limit"
    if code in (401, 403):
        return "auth"
    if code == 408:
        return "timeout"
    if isinstance(code, int) and code >= 500:
        return "server_error"
    return "bad_request" if isinstance(code, int) and code >= 400 else "error"


def batch_counts(b) -> dict | None:
    rc = getattr(b, "request_counts", None)
    if rc is None:
        return None
    return {k: getattr(rc, k, None) for k in ("total", "completed", "failed")}


def batch_error(b) -> str:
    errs = getattr(b, "errors", None)
    data = getattr(errs, "data", None) if errs is not None else None
    if data:
        return "; ".join(f"{getattr(e, 'code', '')}: {getattr(e, 'message', '')}" for e in data)
    return f"the batch ended {b.status} before answering this request"


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()
