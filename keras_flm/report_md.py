"""The run directory's shared files: report.md by sections, metrics.json by artifact.

Several steps write into one run (training curves, evaluation, quantization Table 2,
benchmark Table 3). Each owns a `## Section` of report.md and an entry of
metrics.json; `update_report_section` and `update_metrics` replace only that part,
under a file lock (two commands may finish at once) and by atomic rename (a crash
never leaves a half-written file).
"""
import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from runtime.json_files import read_json  # noqa: F401  (re-exported: the one JSON reader)

#: Prefix of scratch directories (scratch_dir); a crash may leave one behind, never a partial output.
TMP_PREFIX = ".flm-tmp-"
REPORT_FILE = "report.md"
METRICS_FILE = "metrics.json"

_FENCE = re.compile(r"^\s*(```|~~~)")


def new_file_mode(directory: bool = False) -> int:
    """The mode open() / mkdir() would give a new file or directory (0o666 / 0o777 less the umask).
    mkstemp and mkdtemp make theirs private (0o600 / 0o700), and what is renamed into place keeps
    that: a run's or a release's files would be unreadable to everyone but their writer (another
    user of the board, a docker host user)."""
    return (0o777 if directory else 0o666) & ~current_umask()


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc/self/status, 4.7+):
    os.umask can only be read by setting it, and a file another thread creates in between gets the
    temporary mask. Elsewhere the temporary mask is 0o077, so such a file comes out private rather
    than world-writable."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def write_with(path: str, writer: Callable[[str], object]) -> str:
    """Call writer(tmp_path) for a temp file beside `path`, then rename it onto `path`: the file is
    either complete or absent, never half-written (the extension is kept for writers that need it)."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix="." + base + ".", suffix=".tmp" + ext, dir=d)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` to `path` atomically (write_with), synced to disk before the rename."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    write_with(path, write)


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Exclusive advisory lock (hidden file .NAME.lock beside `path`) for a read-modify-write of it."""
    d, base = os.path.split(os.path.abspath(path))
    with open(os.path.join(d, "." + base + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def scratch_dir(parent: str) -> Iterator[str]:
    """A temporary directory inside `parent`, removed on exit whatever happens."""
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent)
    os.chmod(path, new_file_mode(directory=True))  # it may be renamed into place (replace_path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def replace_path(src: str, dst: str) -> None:
    """Move `src` (file or directory) to `dst`, replacing what was there.

    Files: one os.replace. Directories: the old one is first renamed aside, so `dst` is
    at every moment either the complete old or the complete new directory.
    """
    if os.path.isdir(src):
        old = None
        if os.path.lexists(dst):
            old = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=os.path.dirname(os.path.abspath(dst)))
            os.rmdir(old)
            os.rename(dst, old)
        os.rename(src, dst)
        if old is not None:
            if os.path.isdir(old) and not os.path.islink(old):
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.remove(old)
    else:
        os.replace(src, dst)


# ---------------------------------------------------------------- metrics.json

def read_metrics(run_dir: str) -> Dict[str, Dict[str, Any]]:
    """metrics.json as {artifact: entry}; {} when absent. Raises ValueError if it is not such a dict."""
    path = os.path.join(run_dir, METRICS_FILE)
    data = read_json(path, {})
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError("%s must hold a JSON object {artifact: {...}}" % path)
    return data


def update_metrics(run_dir: str, artifact: str, entry: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Merge `entry` into metrics.json[artifact] (key by key; other artifacts untouched); return all."""
    path = os.path.join(run_dir, METRICS_FILE)
    with locked(path):
        data = read_metrics(run_dir)
        merged = dict(data.get(artifact, {}))
        merged.update(entry)
        data[artifact] = merged
        atomic_write_json(path, data)
    return data


# ---------------------------------------------------------------- report.md

def parse_sections(text: str) -> Tuple[str, List[Tuple[str, str]]]:
    """Split markdown into (preamble, [(title, body), ...]) at level-2 headings outside code fences."""
    preamble: List[str] = []
    sections: List[Tuple[str, List[str]]] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return ("\n".join(preamble).strip(),
            [(t, "\n".join(body).strip()) for t, body in sections])


def render_sections(preamble: str, sections: List[Tuple[str, str]]) -> str:
    parts = [preamble.strip()] if preamble.strip() else []
    parts += ["## %s\n\n%s" % (t, b.strip()) if b.strip() else "## %s" % t for t, b in sections]
    return "\n\n".join(parts) + "\n"


def update_report_section(run_dir: str, title: str, markdown: str,
                          header: Optional[str] = None, first: bool = False) -> str:
    """Replace (or append) the `## title` section of run_dir/report.md; keep all other sections.

    `markdown` is the section body (it may use ### subheadings, not ##). A new report
    starts with `header` (default "# flm run report: <run name>"). A section that does not
    exist yet goes last, or first with `first` (the run description). Returns the path.
    """
    if "\n" in title or not title.strip():
        raise ValueError("section title must be one non-empty line, got %r" % (title,))
    _, inner = parse_sections("## x\n" + markdown)
    if len(inner) > 1:
        raise ValueError("section %r body must not contain level-2 headings (## ...): %r"
                         % (title, inner[1][0]))
    path = os.path.join(run_dir, REPORT_FILE)
    with locked(path):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                preamble, sections = parse_sections(f.read())
        else:
            preamble, sections = header or "# flm run report: %s" % os.path.basename(
                os.path.abspath(run_dir)), []
        title = title.strip()
        for i, (t, _) in enumerate(sections):
            if t == title:
                sections[i] = (title, markdown)
                break
        else:
            sections.insert(0 if first else len(sections), (title, markdown))
        atomic_write_text(path, render_sections(preamble, sections))
    return path


def markdown_table(header: List[str], rows: List[List[Any]]) -> str:
    """A GitHub markdown table; None cells print as an en dash."""
    def cell(v: Any) -> str:
        return "–" if v is None else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
