#!/usr/bin/env python3
"""List PostgreSQL's built-in VOLATILE functions from the catalog source (pg_proc.dat).

Usage:
    scripts/pg-function-lists.py [--versions] [--candidates] [LABEL=]pg_proc.dat ...

Each argument is one release's src/include/catalog/pg_proc.dat, optionally prefixed with a
version label ("17=/path/pg_proc.dat"); without a label the first run of digits in the file name
is used ("pg_proc.17.dat" -> 17). The default output is the VOLATILE list: the distinct proname of
every entry whose provolatile is 'v' in ANY of the given files (union), sorted, one per line.

    --versions    append a tab and the versions each volatile name is volatile in ("13,14,15")
    --candidates  instead print the mechanical candidates for functions that take SQL text or a
                  relation/cursor name (argument named *query*/*sql*, or typed regclass/refcursor,
                  or a name/text argument called like a relation); these are only candidates:
                  each one must be checked against the C implementation in src/backend

Column defaults come from src/include/catalog/pg_proc.h (identical in 13..17): an entry without
provolatile is immutable ('i'), one without prokind is a plain function ('f').

How the checked-in lists were made (2026-12-02):
    13: upstream release tarball postgresql-13.23 (Debian bullseye-security source package
        postgresql-13 13.23-0+deb11u4, file postgresql-13_13.23.orig.tar.bz2,
        sha256 6ec3c82726af92b7dec873fa1cdf881eca92a4219787dfad05acb6b10e041fd6);
        PostgreSQL's own git mirror could not be fetched here and no mirror had REL_13_STABLE.
    14: REL_14_STABLE cec48686a0d781806a262c548adb7d0fb06868fc (14.23; pg_proc.dat last changed 67c33a114f)
    15: REL_15_STABLE 7213cbfa02144b3a79a19cfae6964afd8219ecde (15.18; last changed 96ef3237bf)
    16: REL_16_STABLE 894da35b3e8bfa81101e6946deefc12785ffac44 (16.14; last changed a2eb99a01e)
    17: REL_17_STABLE 3704870b29c5f3d662a30ab242a2b50e6354b944 (17.10; last changed 8aee330af5)
    (14..17 read with `git show REL_N_STABLE:src/include/catalog/pg_proc.dat` from a mirror of
    postgres/postgres whose release branches carry upstream's commits; pg_proc.dat has not changed
    on any of these branches since before its .0 release, so every minor release has the same list.)

    scripts/pg-function-lists.py 13=pg_proc.13.dat 14=pg_proc.14.dat 15=pg_proc.15.dat \
        16=pg_proc.16.dat 17=pg_proc.17.dat > volatile.txt

Only pg_proc.dat is read. initdb also runs SQL scripts that create functions (system_views.sql in
13, system_functions.sql from 14 on, snowball_func.sql.in) and installs the plpgsql extension into
every database. Checked for 13..17: the scripts' CREATE OR REPLACE FUNCTIONs only redefine names
that pg_proc.dat already has, volatility unchanged, except ts_debug (13, STABLE). Volatile functions
that exist in a fresh database but are NOT in this output: dsnowball_init, dsnowball_lexize
(snowball dictionary template, internal arguments) and plpgsql_call_handler, plpgsql_inline_handler,
plpgsql_validator (extension plpgsql). For 15 the output was compared with pg_proc of a fresh
15.18 cluster: those five are the only difference.
"""

import re
import sys

DEFAULTS = {"provolatile": "i", "prokind": "f"}


class ParseError(Exception):
    pass


def tokenize(text, path):
    """Tokens of the Perl data literal used by the catalog .dat files."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n,":
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{}[]":
            yield c
            i += 1
        elif text.startswith("=>", i):
            yield "=>"
            i += 2
        elif c == "'":
            i += 1
            buf = []
            while True:
                if i >= n:
                    raise ParseError(f"{path}: unterminated string")
                c = text[i]
                if c == "\\" and i + 1 < n and text[i + 1] in "\\'":
                    buf.append(text[i + 1])
                    i += 2
                elif c == "'":
                    i += 1
                    break
                else:
                    buf.append(c)
                    i += 1
            yield ("str", "".join(buf))
        else:
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(text, i)
            if not m:
                raise ParseError(f"{path}: unexpected {text[i:i + 20]!r}")
            yield ("word", m.group(0))
            i = m.end()


def parse_dat(path):
    with open(path, encoding="utf-8") as f:
        toks = list(tokenize(f.read(), path))
    if not toks or toks[0] != "[" or toks[-1] != "]":
        raise ParseError(f"{path}: not a [ ... ] list")
    entries, k = [], 1
    while k < len(toks) - 1:
        if toks[k] != "{":
            raise ParseError(f"{path}: expected '{{' at token {k}")
        k += 1
        row = {}
        while toks[k] != "}":
            key, arrow, val = toks[k], toks[k + 1], toks[k + 2]
            if not (isinstance(key, tuple) and arrow == "=>" and isinstance(val, tuple)):
                raise ParseError(f"{path}: bad key/value near token {k}")
            row[key[1]] = val[1]
            k += 3
        k += 1
        for col, default in DEFAULTS.items():
            row.setdefault(col, default)
        entries.append(row)
    return entries


def label_of(arg):
    if "=" in arg:
        label, path = arg.split("=", 1)
        return label, path
    m = re.search(r"\d+", arg.rsplit("/", 1)[-1])
    return (m.group(0) if m else arg), arg


def arg_list(row):
    """(position, name, type) for each input argument, 1-based positions."""
    types = row.get("proargtypes", "").split()
    names = row.get("proargnames", "").strip("{}")
    names = names.split(",") if names else []
    modes = row.get("proargmodes", "").strip("{}")
    modes = modes.split(",") if modes else []
    if modes:  # names then cover all arguments, including OUT ones
        alltypes = row.get("proallargtypes", "").strip("{}")
        alltypes = alltypes.split(",") if alltypes else types  # only IN/VARIADIC args
        out, pos = [], 0
        for idx, mode in enumerate(modes):
            if mode in ("i", "b", "v"):
                pos += 1
                typ = alltypes[idx] if idx < len(alltypes) else types[pos - 1]
                out.append((pos, names[idx] if idx < len(names) else "", typ))
        return out
    return [(p + 1, names[p] if p < len(names) else "", t) for p, t in enumerate(types)]


CAND_NAME = re.compile(r"query|sql|cursor|tbl|table|relname|schema|portal", re.I)
CAND_TYPE = {"regclass", "refcursor"}
CAND_SRC = re.compile(r"(?<!ts)query(?!tree)|_sql$|cursor|relname|byrel|_to_xml", re.I)


def main(argv):
    show_versions = "--versions" in argv
    candidates = "--candidates" in argv
    files = [a for a in argv if not a.startswith("--")]
    if not files:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    seen = {}
    for arg in files:
        label, path = label_of(arg)
        for row in parse_dat(path):
            if candidates:
                hits = [
                    f"{pos}:{name or '?'} {typ}"
                    for pos, name, typ in arg_list(row)
                    if typ in CAND_TYPE
                    or (typ in ("text", "name", "cstring") and CAND_NAME.search(name))
                ]
                src = row["prosrc"]  # a C symbol, or SQL text for LANGUAGE sql entries
                if hits or (" " not in src and CAND_SRC.search(src)):
                    key = (row["proname"], row["proargtypes"], row["prosrc"], "; ".join(hits))
                    seen.setdefault(key, []).append(label)
            elif row["provolatile"] == "v":
                seen.setdefault(row["proname"], [])
                if label not in seen[row["proname"]]:
                    seen[row["proname"]].append(label)
    for key in sorted(seen):
        versions = ",".join(seen[key])
        if candidates:
            name, types, src, hits = key
            print(f"{name}({types.replace(' ', ',')})\tprosrc={src}\t{hits}\t{versions}")
        elif show_versions:
            print(f"{key}\t{versions}")
        else:
            print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
