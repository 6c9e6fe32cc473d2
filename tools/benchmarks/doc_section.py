"""Generated sections of a docs page: the text between `<!-- TOOL:BEGIN NAME -->` and
`<!-- TOOL:END NAME -->` belongs to the script TOOL, everything else to the page's authors.
Shared by perf.py and arm_estimate.py, which write docs/benchmarks.md this way."""
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
    path.write_text(text)
