"""VisualDL logs that show a resumed run whole.

VisualDL 2.5.3 shows one file per log folder, the newest `vdlrecords.*.log` (`LogReader.logs` sorts the names and
keeps the last), and every `LogWriter` starts a new file: after a resume the earlier curves vanished from the UI.
So a resumed run first copies the run's records up to the checkpoint's iteration into its new file, then appends;
the files it replaced are removed. Records past the checkpoint (logged by the run that went on before it stopped)
are not copied: those iterations run again, and each step shows once.

Every file this module opens carries a meta record tagged WHOLE_RUN (meta records draw nothing in VisualDL): it
holds the run from its first step. A file without it was started by a resume before this module, at the resume
point, so the file before it holds the steps before that.

A file is a sequence of records, each a little-endian uint64 length and a serialised `record_pb2.Record` (VisualDL's
`RecordWriter` without crc). A run killed mid-write leaves a truncated last record, which is dropped.
"""

import contextlib
import io
import os
import struct
import time
from typing import Dict, Iterator, List, Optional, Tuple

PREFIX = "vdlrecords."  # what VisualDL's reader requires in a log file's name
WHOLE_RUN = "segmenter_whole_run"  # the tag of the meta record marking a file that holds its run from the start


def log_files(folder: str) -> List[str]:
    """The VisualDL log files of folder (not its sub-folders, which VisualDL shows as other runs), oldest first:
    in the order VisualDL sorts them, whose last one it shows."""
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.startswith(PREFIX)]


def records(path: str) -> Iterator[Tuple[str, int, bytes]]:
    """(tag, step, raw record) of every complete record of one log file; meta records come as (tag, -1, b"")."""
    from visualdl.proto import record_pb2

    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 8 <= len(data):
        (n,) = struct.unpack_from("<Q", data, pos)
        if pos + 8 + n > len(data):  # the tail of a killed writer
            return
        raw = data[pos + 8 : pos + 8 + n]
        pos += 8 + n
        rec = record_pb2.Record()
        rec.ParseFromString(raw)
        value = rec.values[0]
        meta = value.WhichOneof("one_value") == "meta_data"
        yield (value.tag, -1, b"") if meta else (value.tag, int(value.id), raw)


def history(folder: str, upto: int) -> List[bytes]:
    """The run's records in folder with steps <= upto, each (tag, step) once, in step order: from the newest file
    back to the newest one marked WHOLE_RUN; an unmarked file supplies only the steps before the first step of the
    files after it."""
    chosen: Dict[Tuple[str, int], bytes] = {}
    before = None  # steps from here on come from newer files
    for path in reversed(log_files(folder)):
        whole, first = False, None
        for tag, step, raw in records(path):
            if step < 0:
                whole |= tag == WHOLE_RUN
                continue
            first = step if first is None else min(first, step)
            if step <= upto and (before is None or step < before):
                chosen.setdefault((tag, step), raw)
        if whole:
            break
        if first is not None:
            before = first if before is None else min(before, first)
    return [raw for _, raw in sorted(chosen.items(), key=lambda kv: (kv[0][1], kv[0][0]))]


def open_writer(save_dir: str, resumed_from: Optional[str] = None, start: int = 0):
    """A VisualDL LogWriter on save_dir/vdl. Resuming from the checkpoint folder resumed_from at iteration start,
    the new file first receives the run's records up to start (from the checkpoint's save_dir/vdl), so VisualDL,
    which shows the newest file only, shows the whole run; the older files of save_dir/vdl are then removed."""
    from visualdl import LogWriter
    from visualdl.component.base_component import meta_data

    folder = os.path.join(save_dir, "vdl")
    if resumed_from is None:
        writer = LogWriter(folder)
        writer.add_meta(WHOLE_RUN)
        return writer
    source = os.path.join(os.path.dirname(os.path.abspath(resumed_from)), "vdl")
    older = log_files(folder)
    kept = history(source, start)
    os.makedirs(folder, exist_ok=True)
    # a name after every existing one: VisualDL shows the last in sorted order
    stamp = max(
        [int(time.time())] + [int(s) + 1 for s in (os.path.basename(p).split(".")[1] for p in older) if s.isdigit()]
    )
    name = f"{PREFIX}{stamp:010d}.log"
    tmp = os.path.join(folder, ".resumed-history.part")  # no "vdlrecords" in it: VisualDL ignores it until renamed
    with open(tmp, "wb") as f:
        for raw in [meta_data(tag=WHOLE_RUN, walltime=round(time.time() * 1000)).SerializeToString()] + kept:
            f.write(struct.pack("<Q", len(raw)) + raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, name))
    if os.path.realpath(source) == os.path.realpath(folder):
        for path in older:  # their records up to start are in the new file; the rest run again
            os.remove(path)
    with contextlib.redirect_stdout(io.StringIO()):  # VisualDL prints that it appends to an existing file
        return LogWriter(folder, file_name=name)
