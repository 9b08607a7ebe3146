#!/usr/bin/env python3
"""Turns go-md2man's tables into tagged paragraphs, which fit any terminal width.

The docs' tables have a first column of names (keys, paths, error codes) that are often long
and cannot be broken, so as tbl tables they overflow 80 columns (man's default width, and
lintian's), however the columns are set. Each row becomes instead:

    .TP
    <first cell>
    <heading 2>: <cell 2>; <heading 3>: <cell 3> ...   (two columns: just <cell 2>)

Reads go-md2man's roff on stdin, writes it on stdout.
"""
import sys


def rows_of(lines):
    """Cells of each row. A cell may be a T{ ... T} text block spanning lines; after its T}
    the row goes on on the same line, or on the next one when that starts with a tab."""
    rows, row, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if row is not None and line.startswith("\t"):
            rest = line[1:]
        else:
            if row is not None:
                rows.append(row)
            row, rest = [], line
        while True:
            if rest.startswith("T{"):
                block = []
                while not lines[i].startswith("T}"):
                    block.append(lines[i])
                    i += 1
                row.append(" ".join(block))
                rest = lines[i][2:]
                i += 1
                if not rest.startswith("\t"):
                    break
                rest = rest[1:]
                continue
            cell, tab, rest = rest.partition("\t")
            row.append(cell)
            if not tab:
                break
    if row is not None:
        rows.append(row)
    return rows


def convert(table):
    # The options ("allbox;") and format lines end at the one ending with ".".
    start = next(i for i, line in enumerate(table) if line.rstrip().endswith(".")) + 1
    rows = rows_of(table[start:])
    headings, out = rows[0], []
    for cells in rows[1:]:
        if len(cells) == 2:
            text = cells[1]
        else:
            text = "; ".join(f"{headings[i]}: {cells[i]}" for i in range(1, len(cells)) if cells[i])
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
