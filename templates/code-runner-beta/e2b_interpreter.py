"""E2B's code-interpreter API on port 49999 of the capsule's loopback, over the template's
Jupyter server: `POST /execute` streams a cell's output as NDJSON (stdout, stderr, results
with their MIME forms, the error, the execution count, then end_of_execution), and
`/contexts` creates, lists, restarts and removes kernels. The default Python context is the
template's warm `wrenn` kernel. Clients reach it through Wrenn's E2B data plane
(`E2b-Sandbox-Port: 49999`), which checks the sandbox's access token on `/execute`.
"""

import datetime
import json
import time
import uuid

from tornado import gen, httpclient, ioloop, web, websocket

JUPYTER = "127.0.0.1:8888"
KERNEL = "wrenn"
PORT = 49999
# A MIME type of Jupyter's display data, and the field E2B's Result carries it in.
MIME_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
}

# context id -> {"id", "language", "cwd"}; the ids are Jupyter's kernel ids.
CONTEXTS = {}
DEFAULT = {"id": None}


async def jupyter(method, path, body=None):
    client = httpclient.AsyncHTTPClient()
    resp = await client.fetch(
        f"http://{JUPYTER}{path}",
        method=method,
        body=None if body is None else json.dumps(body),
        headers={"Content-Type": "application/json"},
        allow_nonstandard_methods=True,
        request_timeout=120,
    )
    return json.loads(resp.body) if resp.body else None


async def default_context():
    """The warm kernel (started when the template was built), or a new one."""
    if DEFAULT["id"] in CONTEXTS:
        return CONTEXTS[DEFAULT["id"]]
    kernels = [k for k in await jupyter("GET", "/api/kernels") if k.get("name") == KERNEL]
    kid = kernels[0]["id"] if kernels else (await jupyter("POST", "/api/kernels", {"name": KERNEL}))["id"]
    CONTEXTS[kid] = {"id": kid, "language": "python", "cwd": "/home/user"}
    DEFAULT["id"] = kid
    return CONTEXTS[kid]


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def result_of(content, main):
    data = content.get("data", {})
    out = {"type": "result", "is_main_result": main, "extra": {}}
    for mime, value in data.items():
        field = MIME_FIELDS.get(mime)
        if field:
            out[field] = value
        else:
            out["extra"][mime] = value
    return out


class Handler(web.RequestHandler):
    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "application/json")
        reason = self._reason
        exc = kwargs.get("exc_info")
        if exc and isinstance(exc[1], web.HTTPError) and exc[1].log_message:
            reason = exc[1].log_message
        elif exc:
            reason = f"{self._reason}: {type(exc[1]).__name__}: {exc[1]}"
        self.finish(json.dumps({"error": reason, "message": reason}))

    def body(self):
        try:
            return json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON")


class Health(Handler):
    async def get(self):
        await jupyter("GET", "/api/status")
        self.set_status(204)


class Contexts(Handler):
    async def get(self):
        await default_context()
        self.finish(json.dumps(list(CONTEXTS.values())))

    async def post(self):
        req = self.body()
        language = req.get("language") or "python"
        if language != "python":
            raise web.HTTPError(400, f"language {language!r} is not supported (only python)")
        kernel = await jupyter("POST", "/api/kernels", {"name": KERNEL})
        ctx = {"id": kernel["id"], "language": "python", "cwd": req.get("cwd") or "/home/user"}
        CONTEXTS[ctx["id"]] = ctx
        if ctx["cwd"] != "/home/user":
            await run_silently(ctx["id"], f"import os; os.chdir({ctx['cwd']!r})")
        self.finish(json.dumps(ctx))


class Context(Handler):
    async def delete(self, cid):
        if cid not in CONTEXTS:
            raise web.HTTPError(404, f"context {cid} not found")
        await jupyter("DELETE", f"/api/kernels/{cid}")
        CONTEXTS.pop(cid, None)
        if DEFAULT["id"] == cid:
            DEFAULT["id"] = None
        self.set_status(204)


class Restart(Handler):
    async def post(self, cid):
        if cid not in CONTEXTS:
            raise web.HTTPError(404, f"context {cid} not found")
        await jupyter("POST", f"/api/kernels/{cid}/restart")
        self.set_status(204)


def execute_request(code, silent=False):
    msg_id = uuid.uuid4().hex
    return msg_id, json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "e2b",
                   "session": uuid.uuid4().hex, "version": "5.3", "date": now()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": silent, "store_history": not silent,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    })


# How long a kernel that was just started (its startup imports numpy, pandas and matplotlib,
# slow under emulation) may take to answer.
KERNEL_START_TIMEOUT = 600


def kernel_info_request():
    msg_id = uuid.uuid4().hex
    return msg_id, json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "kernel_info_request", "username": "e2b",
                   "session": uuid.uuid4().hex, "version": "5.3", "date": now()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [], "content": {},
    })


async def reply_to(ws, msg_id, msg_type):
    while True:
        raw = await ws.read_message()
        if raw is None:
            raise ConnectionError("the kernel's channels closed")
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") == msg_id and msg.get("msg_type") == msg_type:
            return msg


async def channels(kid):
    """The channels WebSocket of a kernel that answers: one just started may refuse the
    connection, or take its time to reply, until its startup is done."""
    deadline = time.monotonic() + KERNEL_START_TIMEOUT
    while True:
        ws = None
        try:
            ws = await websocket.websocket_connect(f"ws://{JUPYTER}/api/kernels/{kid}/channels")
            msg_id, req = kernel_info_request()
            await ws.write_message(req)
            await gen.with_timeout(datetime.timedelta(seconds=15), reply_to(ws, msg_id, "kernel_info_reply"))
            return ws
        except Exception:
            if ws is not None:
                ws.close()
            if time.monotonic() > deadline:
                raise
            await gen.sleep(1)


async def run_silently(kid, code):
    ws = await channels(kid)
    try:
        msg_id, req = execute_request(code, silent=True)
        await ws.write_message(req)
        while True:
            raw = await ws.read_message()
            if raw is None:
                return
            msg = json.loads(raw)
            if (msg.get("parent_header", {}).get("msg_id") == msg_id
                    and msg.get("msg_type") == "status"
                    and msg["content"].get("execution_state") == "idle"):
                return
    finally:
        ws.close()


class Execute(Handler):
    async def post(self):
        req = self.body()
        code = req.get("code")
        if not isinstance(code, str):
            raise web.HTTPError(400, "code must be a string")
        language = req.get("language") or "python"
        if req.get("context_id"):
            ctx = CONTEXTS.get(req["context_id"])
            if ctx is None:
                raise web.HTTPError(404, f"context {req['context_id']} not found")
        elif language != "python":
            raise web.HTTPError(400, f"language {language!r} is not supported (only python)")
        else:
            ctx = await default_context()
        envs = req.get("env_vars") or {}
        if envs:
            await run_silently(ctx["id"], "import os as _e2b_os\n_e2b_saved = dict(_e2b_os.environ)\n"
                               f"_e2b_os.environ.update({json.dumps(envs)})")
        self.set_header("Content-Type", "application/x-ndjson")
        ws = await channels(ctx["id"])
        try:
            msg_id, request = execute_request(code)
            await ws.write_message(request)
            await self.stream(ws, msg_id)
        finally:
            ws.close()
            if envs:
                await run_silently(ctx["id"], "_e2b_os.environ.clear()\n_e2b_os.environ.update(_e2b_saved)")

    async def emit(self, obj):
        self.write(json.dumps(obj) + "\n")
        await self.flush()

    async def stream(self, ws, msg_id):
        while True:
            raw = await ws.read_message()
            if raw is None:
                await self.emit({"type": "error", "name": "KernelDied", "value": "the kernel went away", "traceback": ""})
                return
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg.get("msg_type"), msg.get("content", {})
            if kind == "stream":
                await self.emit({"type": content.get("name", "stdout"), "text": content.get("text", ""), "timestamp": now()})
            elif kind == "execute_result":
                await self.emit(result_of(content, True))
            elif kind == "display_data":
                await self.emit(result_of(content, False))
            elif kind == "error":
                await self.emit({"type": "error", "name": content.get("ename", ""), "value": content.get("evalue", ""),
                                 "traceback": "\n".join(content.get("traceback", []))})
            elif kind == "execute_input":
                await self.emit({"type": "number_of_executions", "execution_count": content.get("execution_count", 0)})
            elif kind == "status" and content.get("execution_state") == "idle":
                await self.emit({"type": "end_of_execution"})
                return


def main():
    app = web.Application([
        (r"/health", Health),
        (r"/execute", Execute),
        (r"/contexts", Contexts),
        (r"/contexts/([^/]+)", Context),
        (r"/contexts/([^/]+)/restart", Restart),
    ])
    app.listen(PORT, address="127.0.0.1")
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
