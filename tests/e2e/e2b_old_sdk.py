"""The core scenarios with an `e2b` SDK from before 2.51 (create and connect on the paths
before `/v2`); run by test_e2b.py with the older SDK's own Python. Prints one JSON line."""

import importlib.metadata
import json

from e2b import CommandExitException, Sandbox, SandboxQuery

report = {"version": importlib.metadata.version("e2b")}
sb = Sandbox.create(timeout=300, envs={"GREETING": "hej"}, metadata={"old": "sdk"})
try:
    report["run"] = sb.commands.run("echo $GREETING").stdout
    try:
        sb.commands.run("exit 3")
    except CommandExitException as e:
        report["exit"] = e.exit_code
    sb.files.write("/tmp/f.txt", "hi")
    report["file"] = sb.files.read("/tmp/f.txt")
    sb.files.write("/tmp/keep.txt", "kept")
    assert sb.beta_pause()
    again = Sandbox.connect(sb.sandbox_id)
    report["resumed"] = again.files.read("/tmp/keep.txt")
    listed = Sandbox.list(query=SandboxQuery(metadata={"old": "sdk"})).next_items()
    report["listed"] = [s.sandbox_id for s in listed] == [sb.sandbox_id]
finally:
    sb.kill()
print(json.dumps(report))
