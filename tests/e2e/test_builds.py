"""Template builds from recipes: a real build whose capsules see its files, environment and
running START processes; failing, cancelled and interrupted builds that leave nothing behind;
the admin-only API and the recipe errors it answers."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

import httpx
import pytest

import wrenn

from conftest import unique, wait_until, wrenn_binary

RECIPE = """\
# every instruction of the format
FROM minimal
ENV GREETING="hello from the recipe"
ENV GREETING_PATH=/opt/greet/bin:$PATH
WORKDIR /srv/app
COPY app/ ./
COPY notes.txt /etc/
RUN echo "$GREETING" > greeting.txt \\
    && echo "built in $(pwd)"
USER user
RUN id -un > /tmp/built-by
START echo "$GREETING" > /tmp/started; while true; do date +%s > /tmp/tick; sleep 1; done
HEALTHCHECK --interval=1s --start-period=10s --retries=3 test -s /tmp/tick
"""


def _admin(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=120)


def _context(files: dict[str, str]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode()


def _wait_ended(admin: httpx.Client, build_id: str, timeout: float = 900) -> dict:
    def ended():
        b = admin.get(f"/v1/admin/templates/builds/{build_id}").json()
        return b if b["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_until(ended, timeout, interval=1, what=f"build {build_id} to end")


def _host_templates(server) -> set[str]:
    return {p.name for p in (server.data_dir / "templates").iterdir() if p.name.startswith("tsnap-")}


def _assert_nothing_left(server, admin: httpx.Client, build: dict, name: str, before: set[str]) -> None:
    """The build's capsule is stopped with no VMM, files or network, and no template came."""
    cid = build["capsule_id"]
    assert cid, build
    capsule = admin.get(f"/v1/capsules/{cid}").json()
    assert capsule["status"] == "stopped", capsule
    procs = subprocess.run(["pgrep", "-f", f"{server.data_dir}/capsules/{cid}"], capture_output=True, text=True)
    assert procs.stdout.strip() == "", f"VMM of {cid} still runs"
    assert not (server.data_dir / "capsules" / cid).exists()
    names = [t["name"] for t in admin.get("/v1/snapshots", params={"type": "base"}).json()]
    assert name not in names
    assert _host_templates(server) - before == set()


def _log_text(admin: httpx.Client, build_id: str) -> list[dict]:
    """The whole log of an ended build."""
    return _log_entries(admin, build_id, timeout=120)


def _log_entries(admin: httpx.Client, build_id: str, timeout: float) -> list[dict]:
    """The log entries the stream gives until its `end` event, or until it is quiet for
    `timeout` s (a running build)."""
    entries = []
    try:
        with admin.stream("GET", f"/v1/admin/templates/builds/{build_id}/logs", timeout=timeout) as r:
            assert r.status_code == 200
            event = ""
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "log":
                    entries.append(json.loads(line.split(":", 1)[1]))
                elif line.startswith("data:") and event == "end":
                    break
    except httpx.ReadTimeout:
        pass
    return entries


def test_a_recipe_builds_a_template_whose_capsules_see_its_work(server, tmp_path: Path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('app')\n")
    (tmp_path / "notes.txt").write_text("notes\n")
    (tmp_path / "not-copied.txt").write_text("secret\n")
    recipe = tmp_path / "recipe"
    recipe.write_text(RECIPE)
    name = unique("built")
    run = subprocess.run(
        [str(wrenn_binary()), "template", "build", "--recipe", str(recipe), name],
        capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stderr
    # A progress line per step, each step's output, the end.
    for line in ["[0/11] boot a capsule from minimal", "[4/11] COPY app /srv/app", "[11/11] snapshot"]:
        assert line in run.stderr, run.stderr
    assert "built in /srv/app" in run.stdout, run.stdout
    assert f"template {name} built" in run.stderr

    listed = subprocess.run([str(wrenn_binary()), "template", "list"], capture_output=True, text=True)
    assert any(l.split()[:2] == [name, "base"] for l in listed.stdout.splitlines()), listed.stdout
    # Every team sees it as a base template.
    with _admin(server) as admin:
        team = unique("bteam")
        assert admin.post("/v1/teams", json={"name": team}).status_code == 201
        key = admin.post(f"/v1/teams/{team}/keys", json={"name": "e2e"}).json()["key"]
        try:
            with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60) as other:
                bases = other.get("/v1/snapshots", params={"type": "base"}).json()
                assert {"minimal", name} <= {t["name"] for t in bases}
                # ... and cannot take its name for a snapshot, nor delete it.
                assert other.delete(f"/v1/snapshots/{name}").status_code == 403
        finally:
            admin.delete(f"/v1/teams/{team}")

    c = wrenn.Capsule(template=name, wait=True)
    try:
        assert c.files.read("/srv/app/main.py") == "print('app')\n"
        assert c.files.read("/srv/app/greeting.txt") == "hello from the recipe\n"
        assert c.files.read("/etc/notes.txt") == "notes\n"
        assert c.commands.run("test -e /srv/app/not-copied.txt || echo absent").stdout == "absent\n"
        assert c.files.read("/tmp/built-by") == "user\n"
        assert c.files.read("/tmp/started") == "hello from the recipe\n"
        # The START process was snapshotted running and keeps running in the new capsule.
        first = int(c.files.read("/tmp/tick"))
        wait_until(lambda: int(c.files.read("/tmp/tick")) > first, 30, what="the START loop to tick")
        assert any(p.tag.startswith("start-") for p in c.commands.list())
        # The recipe's environment, with $PATH expanded, is every command's.
        out = c.commands.run('echo "$GREETING|$GREETING_PATH"').stdout
        assert out.startswith("hello from the recipe|/opt/greet/bin:/usr/local/sbin:"), out
    finally:
        c.destroy()
    rm = subprocess.run([str(wrenn_binary()), "template", "rm", name], capture_output=True, text=True)
    assert rm.returncode == 0, rm.stderr
    with _admin(server) as admin:
        assert name not in {t["name"] for t in admin.get("/v1/snapshots").json()}


def test_a_failing_step_leaves_nothing_and_keeps_its_log(server):
    name = unique("fails")
    before = _host_templates(server)
    with _admin(server) as admin:
        r = admin.post("/v1/admin/templates/builds", json={
            "name": name,
            "recipe": "RUN echo before-the-failure\nRUN echo about to fail >&2; exit 7\nRUN echo never\n",
        })
        assert r.status_code == 202, r.text
        build = _wait_ended(admin, r.json()["id"])
        assert build["status"] == "failed", build
        assert "step 2: RUN exited with code 7" in build["error"], build
        entries = _log_text(admin, build["id"])
        texts = [(e["stream"], e["text"]) for e in entries]
        assert ("stdout", "before-the-failure\n") in texts
        assert ("stderr", "about to fail\n") in texts
        assert not any("never" in t for _, t in texts if _ == "stdout")
        assert entries[-1]["stream"] == "error"
        _assert_nothing_left(server, admin, build, name, before)


def test_a_cancelled_build_leaves_nothing(server):
    name = unique("cancel")
    before = _host_templates(server)
    with _admin(server) as admin:
        bid = _start_sleeping_build(admin, name)
        assert admin.post(f"/v1/admin/templates/builds/{bid}/cancel").status_code == 202
        build = _wait_ended(admin, bid, 120)
        assert build["status"] == "cancelled", build
        _assert_nothing_left(server, admin, build, name, before)
        # An ended build cannot be cancelled again.
        again = admin.post(f"/v1/admin/templates/builds/{bid}/cancel")
        assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"


def _start_sleeping_build(admin: httpx.Client, name: str) -> str:
    """Starts a build whose one step sleeps and waits until that step runs; its id."""
    r = admin.post("/v1/admin/templates/builds", json={
        "name": name, "recipe": "RUN echo started; sleep 600\n",
    })
    assert r.status_code == 202, r.text
    bid = r.json()["id"]
    wait_until(lambda: any(e["text"] == "started\n" for e in _partial_log(admin, bid)), 300,
               interval=1, what="the step to start")
    return bid


def _partial_log(admin: httpx.Client, build_id: str) -> list[dict]:
    """The log entries so far of a running build."""
    return _log_entries(admin, build_id, timeout=3)


def test_a_restart_during_a_build_fails_it_and_cleans_up(server):
    name = unique("restart")
    before = _host_templates(server)
    with _admin(server) as admin:
        bid = _start_sleeping_build(admin, name)
    server.restart(hard=True)
    with _admin(server) as admin:
        build = admin.get(f"/v1/admin/templates/builds/{bid}").json()
        assert build["status"] == "failed", build
        assert "server stopped" in build["error"]
        _assert_nothing_left(server, admin, build, name, before)
        texts = [e["text"] for e in _log_text(admin, bid)]
        assert "started\n" in texts and texts[-1] == "the server stopped during the build"


def test_builds_are_for_the_admin_team_and_bad_recipes_name_their_lines(server):
    with _admin(server) as admin:
        team = unique("nonadmin")
        assert admin.post("/v1/teams", json={"name": team}).status_code == 201
        key = admin.post(f"/v1/teams/{team}/keys", json={"name": "e2e"}).json()["key"]
        try:
            with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60) as other:
                r = other.post("/v1/admin/templates/builds", json={"name": "x", "recipe": "RUN true\n"})
                assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
                assert other.get("/v1/admin/templates/builds").status_code == 403
                assert other.delete("/v1/admin/templates/x").status_code == 403
        finally:
            admin.delete(f"/v1/teams/{team}")
        bad = admin.post("/v1/admin/templates/builds", json={
            "name": unique("bad"), "recipe": "RUN true\nFROBNICATE now\nRUN --timeout=5 x\n",
        })
        assert bad.status_code == 400, bad.text
        msg = bad.json()["error"]["message"]
        assert "line 2" in msg and "FROBNICATE" in msg and "line 3" in msg, msg
        missing = admin.post("/v1/admin/templates/builds", json={
            "name": unique("nocopy"), "recipe": "COPY absent.txt /tmp/\n",
            "context": _context({"present.txt": "x"}),
        })
        assert missing.status_code == 400 and "absent.txt" in missing.json()["error"]["message"]
        base = admin.post("/v1/admin/templates/builds", json={"name": "minimal", "recipe": "RUN true\n"})
        assert base.status_code == 409, base.text
        unknown = admin.post("/v1/admin/templates/builds", json={"name": unique("nofrom"), "recipe": "FROM nosuch\nRUN true\n"})
        assert unknown.status_code == 400 and "nosuch" in unknown.json()["error"]["message"]
        nothing = admin.post("/v1/admin/templates/builds", json={"name": unique("norecipe")})
        assert nothing.status_code == 400 and "ships none" in nothing.json()["error"]["message"]
        assert admin.get("/v1/admin/templates/builds/bld-nosuchbuild000000000").status_code == 404
