"""The run record: one JSON object per line, appended as the scan goes (bluesky's documents,
without the dependency).

Each invocation of a scan appends a ``start`` (plan, config, bench identities, whether it
resumes), then events (``band``, ``dark``, ``retry``, ``lamp_interrupted``, ...), then exactly
one ``stop`` with ``exit_status`` ``success`` / ``aborted`` / ``failed`` and the reason — also on
Ctrl-C or any exception, because :meth:`RunRecord.run` writes it in a ``finally``. Only a SIGKILL
or a power cut can leave a start without a stop; the next ``--resume`` notes that in its own
start. Lines are flushed as written, so a reader tailing the file sees every band at once, and a
killed process loses nothing it wrote.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

ExitStatus = Literal["success", "aborted", "failed"]


def _default(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot record a {type(value).__name__} in the run record")


class RunRecord:
    """Appends the documents of one scan invocation to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.run_uid = uuid.uuid4().hex
        self._file: IO[str] | None = None
        self.exit_status: ExitStatus | None = None

    def emit(self, kind: str, **fields: Any) -> None:
        if self._file is None:
            raise ValueError(f"run record {self.path} is not open")
        doc = {"kind": kind, "time_s": time.time(), "run_uid": self.run_uid, **fields}
        self._file.write(json.dumps(doc, default=_default) + "\n")
        self._file.flush()

    @contextmanager
    def run(self, **start: Any) -> Iterator[RunRecord]:
        """Write ``start``, yield, and write ``stop`` whatever happens: success when the block
        ends, aborted on KeyboardInterrupt/SystemExit, failed on any other exception (whose
        one-line message is the reason), re-raising it."""
        previous = last_documents(self.path)
        unfinished = [d["run_uid"] for d in previous if d.get("kind") == "start"]
        stopped = {d.get("run_uid") for d in previous if d.get("kind") == "stop"}
        killed = [uid for uid in unfinished if uid not in stopped]
        self._file = self.path.open("a", encoding="utf-8")  # closed in the finally below
        status: ExitStatus = "failed"
        reason = ""
        try:
            self.emit("start", previous_runs_without_stop=killed, **start)
            yield self
            status, reason = "success", "plan completed"
        except (KeyboardInterrupt, SystemExit) as exc:
            status, reason = "aborted", f"interrupted ({type(exc).__name__})"
            raise
        except BaseException as exc:
            status, reason = "failed", str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise
        finally:
            self.exit_status = status
            try:
                self.emit("stop", exit_status=status, reason=reason)
                os.fsync(self._file.fileno())
            finally:
                self._file.close()
                self._file = None


def last_documents(path: Path) -> list[dict[str, Any]]:
    """Every complete document in a run record (a torn last line from a kill is skipped)."""
    if not Path(path).exists():
        return []
    docs = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return docs
