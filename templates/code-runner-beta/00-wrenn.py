# IPython startup of the `wrenn` kernel (code-runner-beta). Runs once, when the template is
# built; the snapshot keeps its effects.
def _wrenn_startup():
    import importlib
    import os
    import random
    import sys

    # Imported now so that a user's first `import pandas` is instant in every capsule.
    for name in ("numpy", "pandas", "matplotlib.pyplot", "seaborn", "requests"):
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing module must not break the kernel
            print(f"wrenn: could not preload {name}: {exc}", file=sys.stderr)

    # Every capsule is a clone of one snapshot: the random generators would start from the
    # same state in all of them. Wrenn writes a new restore id at each restore; the first cell
    # after one re-seeds Python's and numpy's global generators from the kernel's fresh pool.
    restore_id_path = "/run/wrenn/restore-id"

    def read_restore_id():
        try:
            with open(restore_id_path) as f:
                return f.read().strip()
        except OSError:
            return None

    seen = {"id": read_restore_id()}

    def reseed_after_restore(*_args):
        now = read_restore_id()
        if now == seen["id"]:
            return
        seen["id"] = now
        random.seed(os.urandom(32))
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed(int.from_bytes(os.urandom(4), "little"))

    get_ipython().events.register("pre_run_cell", reseed_after_restore)  # noqa: F821


_wrenn_startup()
del _wrenn_startup
