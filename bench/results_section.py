#!/usr/bin/env python3
"""Replace one generated section of bench/RESULTS.md, keeping everything else.

    python bench/results_section.py NAME [RESULTS.md] < section.md

The section is the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
If the markers are absent the section is appended at the end (for NAME=table:
inserted at the top, after the first heading). Each script owns one section
(run.sh: `table`, fleet.sh: `fleet`, s3.sh: `s3`), so running one does not
erase what the others measured, nor the hand-written sections.
"""
import os
import sys


def replace_section(path, name, body, at_top=False):
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# ZooPipe benchmark results\n\n"
    i, j = text.find(begin), text.find(end)
    if i >= 0 and j > i:
        rest = text[j + len(end):].lstrip("\n")
        text = text[:i] + block + ("\n" + rest if rest else "")
    elif at_top:
        nl = text.find("\n\n")
        head, rest = (text[:nl + 2], text[nl + 2:]) if text.startswith("# ") and nl >= 0 else ("", text)
        text = head + block + "\n" + rest
    else:
        text = text.rstrip("\n") + "\n\n" + block
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    here = os.path.dirname(os.path.abspath(__file__))
    target = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "RESULTS.md")
    replace_section(target, sys.argv[1], sys.stdin.read(), at_top=sys.argv[1] == "table")
