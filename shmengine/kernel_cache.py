"""Keep numba's on-disk cache of the package's kernels consistent with its sources.

numba keys a cached kernel by the timestamp of the file that defines it
alone. A kernel that inlines a function from another module (the worker loop
inlines the book kernel) would load stale machine code after only that
other module changed. So each module's cached kernels are dropped when the
module or anything it imports from the package, directly or not, changed:
a key per module (sizes and mtimes of those files) is kept beside the cache,
and a mismatch at import clears that module's entries.

With NUMBA_CACHE_DIR set, numba caches elsewhere and this does nothing.
"""
import hashlib
import json
import os
import re

STAMP = "kernels.json"
_IMPORT = re.compile(r"^\s*from \.(\w*) import (\([^)]*\)|[^\n]*)", re.M)


def _imports(source):
    """Package modules a module's source imports (``from .x import`` and ``from . import x``)."""
    found = set()
    for module, names in _IMPORT.findall(source):
        if module:
            found.add(module)
        else:
            names = re.sub(r"#[^\n]*", "", names).strip("()")
            found.update(n.split(" as ")[0].strip() for n in names.split(",") if n.strip())
    return found


def module_keys(package_dir):
    """{module: key of its file and every package module it reaches through imports}."""
    stats, deps = {}, {}
    for name in os.listdir(package_dir):
        if name.endswith(".py"):
            path = os.path.join(package_dir, name)
            st = os.stat(path)
            module = name[:-3]
            stats[module] = f"{name}:{st.st_size}:{st.st_mtime_ns};"
            with open(path, encoding="utf-8") as fh:
                deps[module] = _imports(fh.read())
    keys = {}
    for module in stats:
        seen, todo = set(), [module]
        while todo:
            m = todo.pop()
            if m in seen or m not in stats:
                continue
            seen.add(m)
            todo.extend(deps[m])
        keys[module] = hashlib.sha1("".join(stats[m] for m in sorted(seen)).encode()).hexdigest()
    return keys


def drop_stale(package_dir):
    """Clear the cached kernels of every module whose sources changed since they were cached."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    cache = os.path.join(package_dir, "__pycache__")
    stamp = os.path.join(cache, STAMP)
    keys = module_keys(package_dir)
    try:
        with open(stamp) as fh:
            old = json.load(fh)
    except (OSError, ValueError):
        old = {}
    stale = {m for m, k in keys.items() if old.get(m) != k}
    if not stale:
        return
    try:
        for name in os.listdir(cache):
            if name.endswith((".nbi", ".nbc")) and name.split(".", 1)[0] in stale:
                os.unlink(os.path.join(cache, name))
        with open(stamp, "w") as fh:
            json.dump(keys, fh)
    except OSError:  # not writable, or another process cleared it first: numba copes
        pass
