"""A module's cached kernels go when it, or a package module it imports, changes."""
import os

from shmengine.kernel_cache import drop_stale


def _package(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "loop.py").write_text("from .book import process\nfrom . import (layout as L,\n"
                                 "    ring)  # a comment\n")
    (pkg / "book.py").write_text("from . import layout as L\n")
    (pkg / "layout.py").write_text("X = 1\n")
    (pkg / "ring.py").write_text("")
    (pkg / "codec.py").write_text("from .layout import X\n")
    return pkg


def _cache(pkg, *modules):
    for m in modules:
        for suffix in ("nbi", "1.nbc"):
            (pkg / "__pycache__" / f"{m}.kernel-3.py311.{suffix}").write_text("x")


def _cached(pkg):
    return sorted({n.split(".")[0] for n in os.listdir(pkg / "__pycache__")
                   if n.endswith((".nbi", ".nbc"))})


def test_a_change_drops_its_importers_and_nothing_else(tmp_path):
    pkg = _package(tmp_path)
    all_ = ["book", "codec", "layout", "loop", "ring"]
    _cache(pkg, *all_)
    drop_stale(str(pkg))                      # no stamp yet: everything is suspect
    assert _cached(pkg) == []
    _cache(pkg, *all_)
    drop_stale(str(pkg))
    assert _cached(pkg) == all_               # nothing changed
    (pkg / "book.py").write_text("from . import layout as L\nY = 2\n")
    drop_stale(str(pkg))
    assert _cached(pkg) == ["codec", "layout", "ring"]
    _cache(pkg, "book", "loop")
    (pkg / "ring.py").write_text("Z = 3\n")
    drop_stale(str(pkg))
    assert _cached(pkg) == ["book", "codec", "layout"]
    _cache(pkg, "loop", "ring")
    (pkg / "layout.py").write_text("X = 2\n")
    drop_stale(str(pkg))
    assert _cached(pkg) == ["ring"]
