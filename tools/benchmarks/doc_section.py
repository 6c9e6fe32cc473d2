"""Generated sections of a docs page: the text between `<!-- TOOL:BEGIN NAME -->` and
`<!-- TOOL:END NAME -->` belongs to the script TOOL, everything else to the page's authors.
Shared by perf.py and arm_estimate.py, which write docs/benchmarks.md this way."""
import os
import tempfile
from pathlib import Path

NEW_PAGE = "# Benchmarks: speed and footprint, side by side\n"


def markers(tool, name):
    return f"<!-- {tool}:BEGIN {name} -->", f"<!-- {tool}:END {name} -->"


def write_section(path, tool, name, body, title):
    """Replace section NAME of TOOL in the page at PATH with BODY, leaving the rest of the file
    as it is; a missing section is appended under a `## TITLE` heading, a missing file created."""
    path = Path(path)
    begin, end = markers(tool, name)
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else NEW_PAGE
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{block}\n"
    write_atomic(path, text)


def write_atomic(path, text):
    """PATH holds TEXT or what it held before, never half of either: a temporary file in the
    same directory (made with its parents), fsynced, renamed over PATH."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
