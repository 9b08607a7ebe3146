#!/usr/bin/env python3
"""Turns go-md2man's tables into tagged paragraphs, which fit any terminal width.

The docs' tables have a first column of names (keys, paths, error codes) that are often long
and cannot be broken, so as tbl tables they overflow 80 columns (man's default width, and
lintian's), however the columns are set. Each row becomes instead:

    .TP
    <first cell>
    <heading 2>: <cell 2>; ... <last cell>

Reads go-md2man's roff on stdin, writes it on stdout.
"""
import sys


def rows_of(data_lines):
    """Cells of each row; a T{ ... T} text block may span lines."""
    rows, cells, block = [], None, None
    for line in data_lines:
        if block is not None:
            if line == "T}" or line.startswith("T}\t"):
                cells.append(" ".join(block))
                block = None
                rest = line[3:]
                if rest:
                    cells.extend(rest.split("\t"))
                if not cells[-1].endswith("T{"):
                    rows.append(cells)
            else:
                block.append(line)
            continue
        cells = line.split("\t")
        if cells[-1] == "T{":
            cells.pop()
            block = []
        else:
            rows.append(cells)
    return rows


def convert(table):
    # The options ("allbox;") and format lines end at the one ending with ".".
    start = next(i for i, line in enumerate(table) if line.rstrip().endswith(".")) + 1
    rows = rows_of(table[start:])
    headings, out = rows[0], []
    for cells in rows[1:]:
        middle = [f"{headings[i]}: {cells[i]}" for i in range(1, len(cells) - 1) if cells[i]]
        text = "; ".join(middle)
        if len(cells) > 1:
            text = f"{text}. {cells[-1]}" if text else cells[-1]
        out.extend([".TP", cells[0], text])
    return out


def main():
    lines = sys.stdin.read().split("\n")
    out, i = [], 0
    while i < len(lines):
        if lines[i] == ".TS":
            end = lines.index(".TE", i)
            out.extend(convert(lines[i + 1:end]))
            i = end + 1
        else:
            out.append(lines[i])
            i += 1
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
