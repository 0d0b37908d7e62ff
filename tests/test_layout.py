"""The C header csrc/shmengine.h and shmengine.layout describe the same bytes.

A generated C program prints, from the header, the size of every struct, the
offset, size, element type and element count of every field, every constant
and the segment size helpers; each is compared with the numpy dtypes and
constants of layout.py.
"""
import os
import shutil
import subprocess

import numpy as np
import pytest

from shmengine import layout as L

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER_DIR = os.path.join(ROOT, "csrc")

# layout dtype -> C type naming the same struct
STRUCTS = {
    "SEGMENT_HEADER": "shme_segment_header",
    "EVENT": "shme_event",
    "RESULT": "shme_result",
    "BAR_RECORD": "shme_bar_record",
    "SIGNAL_RECORD": "shme_signal_record",
    "USER_RECORD": "shme_user_record",
    "STATUS_RECORD": "shme_status_record",
    "SNAPSHOT_ROW": "struct shme_snapshot",
    "SNAP_HEADER": "shme_snap_header",
    "ANALYTICS_ROW": "struct shme_analytics",
    "ANA_HEADER": "shme_ana_header",
    "ENGINE_INFO": "shme_engine_info",
    "PROC_STATS": "shme_proc_stats",
    "STATS_HEADER": "shme_stats_header",
    "LINK_STATS": "shme_link_stats",
}
# A row's trailing padding exists only as the row dtype's itemsize in Python;
# the C struct names it. Row dtype -> (C name of the padding, unpadded dtype).
TAIL_PADS = {
    "SNAPSHOT_ROW": ("_pad1", L.SNAPSHOT),
    "ANALYTICS_ROW": ("_pad_end", L.ANALYTICS),
}
# Stream records that share RESULT's size and its first fields (the event
# that caused them), so a reader tells them apart by `kind` alone.
STREAM_RECORDS = ("BAR_RECORD", "SIGNAL_RECORD", "USER_RECORD", "STATUS_RECORD")
STREAM_HEAD = ("seq", "exch_ts", "recv_ts", "proc_ts", "symbol", "venue", "kind", "flags",
               "event_type")

SIZE_ARGS = (1, 3, 7, 50, 1000, L.MAX_SYMBOLS)
RING_ARGS = ((64, 64), (1 << 18, 320), (1 << 26, 320))


def find_cc():
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return shutil.which(cc)
    return None


def find_cxx():
    for cxx in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if cxx and shutil.which(cxx):
            return shutil.which(cxx)
    return None


def layout_constants():
    """Every integer constant of layout.py a C reader may need.

    *_WORD and *_WORD32 are indices into numpy views of a ring header,
    derived from the *_OFFSET constants the header does carry."""
    return {k: v for k, v in vars(L).items()
            if k.isupper() and isinstance(v, int) and not isinstance(v, bool)
            and not k.endswith(("_WORD", "_WORD32"))}


def field_lines(dname, dtype, ctype):
    lines = []
    for name in dtype.names:
        ft = dtype.fields[name][0]
        elem = f"((({ctype} *)0)->{name}[0])" if ft.subdtype else f"((({ctype} *)0)->{name})"
        lines.append(
            f'    printf("field {ctype}|{name} %zu %zu %zu %s\\n", offsetof({ctype}, {name}), '
            f'sizeof((({ctype} *)0)->{name}), sizeof((({ctype} *)0)->{name}) / sizeof({elem}), '
            f"TYPECODE({elem}));")
    if dname in TAIL_PADS:
        n = TAIL_PADS[dname][0]
        lines.append(f'    printf("field {ctype}|{n} %zu %zu %zu %s\\n", offsetof({ctype}, {n}), '
                     f"sizeof((({ctype} *)0)->{n}), sizeof((({ctype} *)0)->{n}), "
                     f"TYPECODE(((({ctype} *)0)->{n}[0])));")
    lines.append(f'    printf("size {ctype} %zu\\n", sizeof({ctype}));')
    return lines


def probe_source():
    lines = [
        "#include <stddef.h>",
        "#include <stdio.h>",
        '#include "shmengine.h"',
        "#define TYPECODE(x) _Generic((x), uint8_t: \"u1\", int8_t: \"i1\", uint16_t: \"u2\", "
        "int16_t: \"i2\", uint32_t: \"u4\", int32_t: \"i4\", uint64_t: \"u8\", int64_t: \"i8\", "
        "float: \"f4\", double: \"f8\", default: \"?\")",
        "int main(void)",
        "{",
    ]
    for dname, ctype in STRUCTS.items():
        lines += field_lines(dname, getattr(L, dname), ctype)
    for name in layout_constants():
        lines += [f"#ifdef SHME_{name}",
                  f'    printf("const {name} %llu\\n", (unsigned long long)(SHME_{name}));',
                  "#else",
                  f'    printf("missing {name}\\n");',
                  "#endif"]
    for n in SIZE_ARGS:
        for fn in ("meta_size", "snap_size", "analytics_size", "partition_offset",
                   "names_nbytes"):
            lines.append(f'    printf("func {fn}({n}) %zu\\n", shme_{fn}({n}));')
    for cap, slot in RING_ARGS:
        lines.append(f'    printf("func ring_size({cap},{slot}) %zu\\n", '
                     f"shme_ring_size({cap}, {slot}));")
    lines += ["    return 0;", "}"]
    return "\n".join(lines) + "\n"


def run_probe(cc, tmp_path):
    src = tmp_path / "probe.c"
    src.write_text(probe_source())
    exe = tmp_path / "probe"
    build = subprocess.run([cc, "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra",
                            "-Werror", "-I", HEADER_DIR, "-o", str(exe), str(src)],
                           capture_output=True, text=True)
    assert build.returncode == 0, f"probe does not compile against shmengine.h:\n{build.stderr}"
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    fields, sizes, consts, funcs, missing = {}, {}, {}, {}, []
    for line in out.splitlines():
        tag, rest = line.split(" ", 1)
        if tag == "field":
            key, off, size, count, code = rest.rsplit(" ", 4)
            fields[tuple(key.split("|"))] = (int(off), int(size), int(count), code)
        elif tag == "size":
            ctype, size = rest.rsplit(" ", 1)
            sizes[ctype] = int(size)
        elif tag == "const":
            name, value = rest.split()
            consts[name] = int(value)
        elif tag == "func":
            call, value = rest.split()
            funcs[call] = int(value)
        elif tag == "missing":
            missing.append(rest)
    return fields, sizes, consts, funcs, missing


def numpy_field(dtype, name):
    ft, off = dtype.fields[name][:2]
    base = ft.base if ft.subdtype else ft
    count = int(np.prod(ft.shape)) if ft.subdtype else 1
    return off, ft.itemsize, count, f"{base.kind}{base.itemsize}"


def test_header_matches_layout(tmp_path):
    cc = find_cc()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH: cannot check csrc/shmengine.h")
    fields, sizes, consts, funcs, missing = run_probe(cc, tmp_path)

    for dname, ctype in STRUCTS.items():
        dtype = getattr(L, dname)
        assert sizes[ctype] == dtype.itemsize, f"sizeof({ctype}) != layout.{dname}.itemsize"
        named = 0
        for name in dtype.names:
            want = numpy_field(dtype, name)
            got = fields[(ctype, name)]
            assert got == want, (f"{ctype}.{name}: C (offset, size, count, type) {got}, "
                                 f"layout.{dname} {want}")
            named += want[1]
        if dname in TAIL_PADS:
            pad_name, unpadded = TAIL_PADS[dname]
            pad = fields[(ctype, pad_name)]
            assert pad[0] == unpadded.itemsize and pad[0] + pad[1] == dtype.itemsize, \
                f"{ctype}.{pad_name} must pad the row from {unpadded.itemsize} " \
                f"to {dtype.itemsize} bytes, is (offset {pad[0]}, size {pad[1]})"
            named += pad[1]
        # Every byte is a named field, so the C struct has nothing extra hiding in a gap.
        assert named == dtype.itemsize, f"layout.{dname} has unnamed padding: name it"

    assert not missing, f"shmengine.h lacks {', '.join('SHME_' + m for m in missing)}"
    for name, value in layout_constants().items():
        assert consts[name] == value, f"SHME_{name} is {consts[name]}, layout.{name} is {value}"

    for n in SIZE_ARGS:
        assert funcs[f"meta_size({n})"] == L.meta_size(n)
        assert funcs[f"snap_size({n})"] == L.snap_size(n)
        assert funcs[f"analytics_size({n})"] == L.analytics_size(n)
        assert funcs[f"partition_offset({n})"] == L.partition_offset(n)
        assert funcs[f"names_nbytes({n})"] == L.names_nbytes(n)
    for cap, slot in RING_ARGS:
        assert funcs[f"ring_size({cap},{slot})"] == L.ring_size(cap, slot)


def test_stream_records_share_the_result_head():
    """What lets one ring carry every record kind, and a C reader pick the
    struct by `kind`: the same size and the same leading fields as RESULT."""
    for dname in STREAM_RECORDS:
        dtype = getattr(L, dname)
        assert dtype.itemsize == L.RESULT.itemsize, dname
        assert dtype.names[:len(STREAM_HEAD)] == STREAM_HEAD, dname
        for name in STREAM_HEAD:
            assert dtype.fields[name][:2] == L.RESULT.fields[name][:2], f"{dname}.{name}"


def test_header_compiles_as_cpp(tmp_path):
    cxx = find_cxx()
    if cxx is None:
        pytest.skip("no C++ compiler (c++, g++ or clang++) on PATH")
    src = tmp_path / "use.cpp"
    src.write_text('#include "shmengine.h"\n'
                   "int main() {\n"
                   "    shme_engine e;\n"
                   "    struct shme_snapshot row;\n"
                   "    struct shme_analytics an;\n"
                   "    shme_reader r;\n"
                   "    shme_result out[4];\n"
                   "    if (shme_attach(&e, \"no-such-engine\") != SHME_OK) return 0;\n"
                   "    shme_snapshot(&e, 0, &row);\n"
                   "    shme_analytics(&e, 0, &an);\n"
                   "    shme_subscribe(&e, &r);\n"
                   "    if (shme_poll(&r, out, 4) > 0 && out[0].kind == SHME_RES_BAR)\n"
                   "        return (int)shme_as_bar(&out[0]).trades;\n"
                   "    if (out[0].kind == SHME_RES_SIGNAL)\n"
                   "        return (int)shme_as_signal(&out[0]).signal;\n"
                   "    if (out[0].kind == SHME_RES_USER)\n"
                   "        return shme_as_user(&out[0]).tag;\n"
                   "    shme_detach(&e);\n"
                   "    return 0;\n"
                   "}\n")
    build = subprocess.run([cxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", HEADER_DIR,
                            "-o", str(tmp_path / "use"), str(src)],
                           capture_output=True, text=True)
    assert build.returncode == 0, f"shmengine.h does not compile as C++:\n{build.stderr}"
