"""The test server's files and batches endpoints, as OpenAI-compatible providers serve them.

``POST /v1/files`` (multipart: ``file``, ``purpose``), ``GET /v1/files/{id}`` and
``/v1/files/{id}/content``; ``POST /v1/batches`` (``input_file_id``, ``endpoint``,
``completion_window``, ``metadata``), ``GET /v1/batches/{id}``, ``GET /v1/batches`` (newest
first, ``after`` and ``limit``) and ``POST /v1/batches/{id}/cancel``.

A batch goes ``validating`` → ``in_progress`` → ``finalizing`` → ``completed`` over
``batch_delay_s`` (counted from its creation, so a client that was away finds it further on).
Each line is answered like a live request (the same scores, the same fault kinds at
``batch_line_fault_rate``): an HTTP-level fault becomes a line of the error file with its status
code, a bad answer (no score, out of scale, two scores) a line of the output file. The batches
numbered in ``expire_batches`` (1 = the first created) end ``expired``: the first half of their
lines answered, the rest in the error file as ``batch_expired``; those in ``fail_batches`` end
``failed`` as a whole, with no output; those in ``forget_batches`` answer 404 when polled (a
provider that lost them). ``GET /stats`` adds ``batches_created`` and
``resubmitted_while_pending`` / ``resubmitted_after_success``: lines whose key was put into a new
batch while an earlier batch still held it, or after one had answered it (a client that
creates a batch twice for the same requests shows here).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field

LINE_ERRORS = {"429": (429, "rate_limit_exceeded", "Rate limit reached"),
               "500": (500, "server_error", "internal error"),
               "timeout": (408, "timeout", "the request timed out"),
               "truncated": (500, "server_error", "upstream response truncated"),
               "auth": (401, "invalid_api_key", "Incorrect API key provided")}


@dataclass
class BatchState:
    files: dict = field(default_factory=dict)  # id -> (meta, bytes)
    batches: dict = field(default_factory=dict)  # id -> batch object (created state)
    order: list = field(default_factory=list)
    lines: dict = field(default_factory=dict)  # batch id -> its input lines
    results: dict = field(default_factory=dict)  # batch id -> (status, out id, err id, counts)
    key_state: dict = field(default_factory=dict)  # custom_id -> (batch id, 'pending'|'ok'|'bad')
    log: list = field(default_factory=list)


def _id(prefix: str, *parts: object) -> str:
    return prefix + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


def _line_fault(cfg, batch_id: str, custom_id: str) -> str | None:
    rate = getattr(cfg, "batch_line_fault_rate", 0.0)
    if rate <= 0:
        return None
    rng = random.Random(f"{cfg.seed}|{batch_id}|{custom_id}")
    return rng.choice(list(cfg.faults)) if rng.random() < rate else None


def _finish(cfg, st: BatchState, batch_id: str, answer) -> tuple:
    """Answer every line of a batch once (deterministically), write its output and error
    files, and settle each key's state for the server's double-submission check."""
    number = st.order.index(batch_id) + 1
    lines = st.lines[batch_id]
    if number in cfg.fail_batches:
        for cid in (ln["custom_id"] for ln in lines):
            st.key_state[cid] = (batch_id, "bad")
        cfg.counts["batches_failed"] += 1
        return ("failed", None, None, {"total": len(lines), "completed": 0, "failed": 0})
    expire = number in cfg.expire_batches
    cut = len(lines) // 2 if expire else len(lines)
    out, errs = [], []
    for i, ln in enumerate(lines):
        cid = ln["custom_id"]
        rid = _id("batch_req_", batch_id, cid)
        if i >= cut:
            errs.append({"id": rid, "custom_id": cid, "response": None, "error": {
                "code": "batch_expired", "message": "This request could not be executed before "
                "the completion window expired."}})
            st.key_state[cid] = (batch_id, "bad")
            continue
        fault = _line_fault(cfg, batch_id, cid)
        if fault is not None:
            cfg.counts[f"line_fault:{fault}"] += 1
        if fault in LINE_ERRORS:
            code, kind, msg = LINE_ERRORS[fault]
            errs.append({"id": rid, "custom_id": cid, "response": {
                "status_code": code, "request_id": rid,
                "body": {"error": {"message": msg, "type": kind}}}, "error": None})
            st.key_state[cid] = (batch_id, "bad")
            continue
        body = ln.get("body", {})
        out.append({"id": rid, "custom_id": cid, "response": {
            "status_code": 200, "request_id": rid, "body": answer(body, fault, rid)},
            "error": None})
        st.key_state[cid] = (batch_id, "ok")
    out_id = err_id = None
    if out:
        out_id = _store_file(st, f"{batch_id}_output.jsonl", "batch_output", out)
    if errs:
        err_id = _store_file(st, f"{batch_id}_error.jsonl", "batch_output", errs)
    cfg.counts["batches_expired" if expire else "batches_completed"] += 1
    status = "expired" if expire else "completed"
    return (status, out_id, err_id, {"total": len(lines), "completed": len(out),
                                     "failed": len(errs)})


def _store_file(st: BatchState, name: str, purpose: str, rows: list | bytes) -> str:
    data = rows if isinstance(rows, bytes) else \
        "".join(json.dumps(r) + "\n" for r in rows).encode()
    fid = _id("file-", name, len(st.files), time.time())
    st.files[fid] = ({"id": fid, "object": "file", "bytes": len(data),
                      "created_at": int(time.time()), "filename": name, "purpose": purpose,
                      "status": "processed"}, data)
    return fid


def _view(cfg, st: BatchState, batch_id: str, answer) -> dict:
    """The batch as the provider reports it now."""
    b = dict(st.batches[batch_id])
    if b.get("_cancelled"):
        return {k: v for k, v in b.items() if not k.startswith("_")}
    age = time.time() - b["_t0"]
    delay = cfg.batch_delay_s
    n = len(st.lines[batch_id])
    if age < 0.1 * delay:
        b["status"] = "validating"
    elif age < 0.9 * delay:
        b["status"] = "in_progress"
        b["in_progress_at"] = int(b["_t0"])
        b["request_counts"] = {"total": n, "completed": int(n * age / delay), "failed": 0}
    elif age < delay:
        b["status"] = "finalizing"
        b["request_counts"] = {"total": n, "completed": n, "failed": 0}
    else:
        if batch_id not in st.results:
            st.results[batch_id] = _finish(cfg, st, batch_id, answer)
        status, out_id, err_id, counts = st.results[batch_id]
        b.update(status=status, output_file_id=out_id, error_file_id=err_id,
                 request_counts=counts)
        stamp = int(b["_t0"] + delay)
        b[{"completed": "completed_at", "expired": "expired_at", "failed": "failed_at"}[status]] \
            = stamp
        if status == "failed":
            b["errors"] = {"object": "list", "data": [{
                "code": "invalid_request", "message": "the batch failed as a whole (injected)",
                "param": None, "line": None}]}
    return {k: v for k, v in b.items() if not k.startswith("_")}


def add_routes(app, cfg, answer) -> None:
    """Register the endpoints on the live server's app; ``answer(body, fault, id)`` makes a
    chat completion body as the live endpoint does."""
    from aiohttp import web

    st = BatchState()
    app["batch_state"] = st

    def missing(what: str, ident: str):
        return web.json_response({"error": {"message": f"No such {what}: {ident}",
                                            "type": "invalid_request_error"}}, status=404)

    async def create_file(request):
        form = await request.post()
        upload = form.get("file")
        if upload is None or form.get("purpose") != "batch":
            return web.json_response({"error": {"message": "need file and purpose=batch",
                                                "type": "invalid_request_error"}}, status=400)
        data = upload.file.read()
        fid = _store_file(st, upload.filename or "upload.jsonl", "batch", data)
        cfg.counts["files_uploaded"] += 1
        return web.json_response(st.files[fid][0])

    async def get_file(request):
        fid = request.match_info["fid"]
        return web.json_response(st.files[fid][0]) if fid in st.files else missing("file", fid)

    async def file_content(request):
        fid = request.match_info["fid"]
        if fid not in st.files:
            return missing("file", fid)
        return web.Response(body=st.files[fid][1], content_type="application/octet-stream")

    async def create_batch(request):
        body = await request.json()
        fid = body.get("input_file_id")
        if fid not in st.files:
            return missing("file", fid)
        lines = [json.loads(x) for x in st.files[fid][1].decode().splitlines() if x.strip()]
        bid = _id("batch_", fid, len(st.order))
        for ln in lines:
            prev = st.key_state.get(ln["custom_id"])
            if prev and prev[1] == "pending":
                cfg.counts["resubmitted_while_pending"] += 1
            elif prev and prev[1] == "ok":
                cfg.counts["resubmitted_after_success"] += 1
            st.key_state[ln["custom_id"]] = (bid, "pending")
        t0 = time.time()
        st.batches[bid] = {
            "id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
            "input_file_id": fid, "completion_window": body.get("completion_window", "24h"),
            "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": int(t0), "in_progress_at": None, "expires_at": int(t0) + 86400,
            "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None,
            "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"), "_t0": t0}
        st.order.append(bid)
        st.lines[bid] = lines
        st.log.append({"batch": bid, "input_file_id": fid, "lines": len(lines)})
        cfg.counts["batches_created"] += 1
        return web.json_response(_view(cfg, st, bid, answer))

    async def get_batch(request):
        bid = request.match_info["bid"]
        cfg.counts["batch_polls"] += 1
        if bid in st.batches and st.order.index(bid) + 1 in cfg.forget_batches:
            for ln in st.lines[bid]:  # as if it never was: its keys may be sent again
                st.key_state[ln["custom_id"]] = (bid, "bad")
            return missing("batch", bid)
        return web.json_response(_view(cfg, st, bid, answer)) if bid in st.batches \
            else missing("batch", bid)

    async def list_batches(request):
        ids = st.order[::-1]
        after = request.query.get("after")
        if after in ids:
            ids = ids[ids.index(after) + 1:]
        limit = int(request.query.get("limit", 20))
        page = [_view(cfg, st, b, answer) for b in ids[:limit]]
        return web.json_response({"object": "list", "data": page,
                                  "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None,
                                  "has_more": len(ids) > limit})

    async def cancel_batch(request):
        bid = request.match_info["bid"]
        if bid not in st.batches:
            return missing("batch", bid)
        b = st.batches[bid]
        b.update(status="cancelled", _cancelled=True, cancelled_at=int(time.time()))
        for ln in st.lines[bid]:
            st.key_state[ln["custom_id"]] = (bid, "bad")
        return web.json_response({k: v for k, v in b.items() if not k.startswith("_")})

    for prefix in ("", "/v1"):
        app.router.add_post(prefix + "/files", create_file)
        app.router.add_get(prefix + "/files/{fid}", get_file)
        app.router.add_get(prefix + "/files/{fid}/content", file_content)
        app.router.add_post(prefix + "/batches", create_batch)
        app.router.add_get(prefix + "/batches", list_batches)
        app.router.add_get(prefix + "/batches/{bid}", get_batch)
        app.router.add_post(prefix + "/batches/{bid}/cancel", cancel_batch)
