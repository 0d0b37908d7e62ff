"""``shmengine journal check DIR [--repair]`` and ``shmengine journal info DIR``.

``check`` reads every payload and exits 1 when it finds damage it did not
repair, so scripts can gate a replay on it; ``info`` reads headers only.
"""
import time

from .config import ConfigError
from .journal import JournalError, check, scan
from .sources import journal_stream


def add_parser(sub):
    p = sub.add_parser("journal", help="check, repair or describe an event journal")
    jsub = p.add_subparsers(dest="journal_command", required=True)
    c = jsub.add_parser("check", help="verify every header, seq and CRC of a journal; exit 1 "
                                      "on damage not repaired")
    c.add_argument("dir", help="journal directory")
    c.add_argument("--repair", action="store_true",
                   help="cut the journal back to its last whole good block (removes any later "
                        "segment files)")
    c.set_defaults(func=cmd_check)
    i = jsub.add_parser("info", help="segments, seqs and session of a journal (headers only)")
    i.add_argument("dir", help="journal directory")
    i.set_defaults(func=cmd_info)


def cmd_check(args):
    report = check(args.dir, repair=args.repair)
    if not report.segments:
        raise JournalError(f"{args.dir} holds no journal segment")
    print(report)
    return 0 if report.ok or report.cut else 1


def cmd_info(args):
    report = scan(args.dir, "none")
    if not report.segments:
        raise JournalError(f"{args.dir} holds no journal segment")
    first = report.segments[0]
    print(f"session {first.session!r}, layout version {first.layout_version}")
    try:
        stream = journal_stream(args.dir)
    except ConfigError as e:
        print(f"  {e}")
    else:
        if stream is not None:
            print(f"  written with {stream['symbols']:,} symbols on {stream['venues']} venues")
    for seg in report.segments:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seg.created_ns / 1e9)) \
            if seg.created_ns is not None else "-"
        last = seg.blocks[-1] if seg.blocks else None
        seqs = f"seq {seg.blocks[0].first_seq}..{last.first_seq + last.count - 1}" if last \
            else "no records"
        print(f"  {seg.name}  {seg.size:>12,d} bytes  {len(seg.blocks):>7,d} blocks  "
              f"{seg.records:>12,d} records  {seqs}  created {created} UTC")
    print(report)
    return 0 if report.ok else 1
