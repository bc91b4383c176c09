#!/usr/bin/env python3
"""The documentation's links resolve, and nothing sends a reader outside the repository.

    python3 test/docs/check_links.py [--quiet]

For README.md, CHANGELOG.md, CONTRIBUTING.md and every docs/*.md, each relative link -- inline
[text](path), [text](path#anchor), [text](#anchor), or a reference definition [ref]: path -- must resolve:
the path exists (relative to the linking file), and an anchor exists in the target Markdown file, as
GitHub computes heading anchors (lowercase; characters other than letters, digits, spaces, hyphens and
underscores removed; spaces turned into hyphens; a repeated anchor gets -1, -2...). Links in code blocks
and code spans are not links; external links (http, https, mailto) are skipped.

No file of the repository (the documentation, and every other text file outside build output) names the
design cards or the style guide kept beside the repository (the DESIGN and STYLE files of the folder
../shared): a user's clone does not have them. (The optional test data folder ../shared/data may be
mentioned.)

Prints one "ok - ..." or "not ok - ..." line per check (--quiet: only the failures) and ends with
"N passed, N failed"; exits 1 if any check failed.
"""
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "test", "pylib"))
import checks  # noqa: E402  (ok / not ok lines and the closing count)
from checks import check  # noqa: E402

checks.quiet = "--quiet" in sys.argv[1:]

# Written in two parts so that this file does not name them itself.
FORBIDDEN = ["shared/" + "DESIGN", "shared/" + "STYLE"]
# Build output and caches: not the repository's text.
SKIP_DIRS = {".git", "build", "results", "log", "__pycache__"}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REF_DEF = re.compile(r"^ {0,3}\[([^\]]+)\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.I)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:...


def doc_files():
    files = [f for f in ("README.md", "CHANGELOG.md", "CONTRIBUTING.md") if os.path.isfile(os.path.join(ROOT, f))]
    docs = os.path.join(ROOT, "docs")
    if os.path.isdir(docs):
        files += sorted("docs/" + f for f in os.listdir(docs) if f.endswith(".md"))
    return files


def lines_outside_code(text):
    """(line number, line, line with its code spans blanked) of the lines outside fenced code blocks."""
    fence = None
    for n, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):].strip():
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        yield n, line, CODE_SPAN.sub(lambda c: " " * len(c.group(0)), line)


def heading_text(raw):
    """A heading's text as GitHub renders it: closing #s, links, images, code marks and emphasis gone."""
    raw = re.sub(r"[ \t]+#+$", "", raw)
    raw = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    raw = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    raw = re.sub(r"<[^>]+>", "", raw)
    raw = raw.replace("`", "")
    raw = re.sub(r"(\*\*|__)(.+?)\1", r"\2", raw)
    raw = re.sub(r"(?<![\w*])([*_])(?!\s)(.+?)(?<!\s)\1(?![\w*])", r"\2", raw)
    return raw.strip()


def slug(text):
    """GitHub's heading anchor: lowercase, only letters, digits, spaces, hyphens, underscores; spaces to -."""
    text = text.lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


_anchors = {}


def anchors_of(path):
    """The anchors of a Markdown file: its headings' (with -1, -2... for repeats) and explicit <a name/id>."""
    if path not in _anchors:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        seen = {}
        found = set()
        for _, line, blanked in lines_outside_code(text):
            m = HEADING.match(line)  # a heading's code spans are part of its text
            if m:
                base = slug(heading_text(m.group(2)))
                k = seen.get(base, 0)
                found.add(base if k == 0 else "%s-%d" % (base, k))
                seen[base] = k + 1
            for a in HTML_ANCHOR.findall(blanked):
                found.add(a)
        _anchors[path] = found
    return _anchors[path]


def links_of(text):
    """(line number, link text, target) of every link outside code."""
    for n, _, line in lines_outside_code(text):
        m = REF_DEF.match(line)
        if m:
            yield n, "[%s]:" % m.group(1), m.group(2).strip("<>")
            continue
        for m in INLINE_LINK.finditer(line):
            yield n, m.group(1), m.group(2).strip("<>")


def check_links(rel):
    path = os.path.join(ROOT, rel)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    count = 0
    for n, label, target in links_of(text):
        if EXTERNAL.match(target):
            continue
        count += 1
        file_part, _, anchor = target.partition("#")
        where = "%s:%d: [%s](%s)" % (rel, n, label if len(label) <= 60 else label[:57] + "...", target)
        dest = path if file_part == "" else os.path.normpath(os.path.join(os.path.dirname(path), file_part))
        if not os.path.exists(dest):
            check(where, False, "no such file: %s" % os.path.relpath(dest, ROOT))
            continue
        if not os.path.realpath(dest).startswith(os.path.realpath(ROOT) + os.sep) and os.path.realpath(dest) != os.path.realpath(ROOT):
            check(where, False, "points outside the repository")
            continue
        if anchor:
            if not dest.endswith(".md") or os.path.isdir(dest):
                check(where, False, "an anchor into a file that is not Markdown")
                continue
            ok = anchor in anchors_of(dest)
            detail = None
            if not ok:
                close = sorted(a for a in anchors_of(dest) if anchor.split("-")[0] in a)[:8]
                detail = "no heading of %s has the anchor #%s%s" % (
                    os.path.relpath(dest, ROOT), anchor, ("; near: " + ", ".join(close)) if close else "")
            check(where, ok, detail)
        else:
            check(where, True)
    if count == 0:
        check("%s: no relative link" % rel, True)


def forbidden_mentions(path):
    try:
        with open(path, "rb") as f:
            data = f.read(2_000_000)
    except OSError:
        return []
    if b"\0" in data:
        return []  # binary
    text = data.decode("utf-8", "replace")
    hits = []
    for n, line in enumerate(text.split("\n"), 1):
        for word in FORBIDDEN:
            if word in line:
                hits.append("%d: %s" % (n, line.strip()[:160]))
    return hits


def main():
    docs = doc_files()
    check("README.md exists", "README.md" in docs)
    for rel in docs:
        check_links(rel)
    # The documentation one file at a time, then every other text file of the repository at once.
    for rel in docs:
        hits = forbidden_mentions(os.path.join(ROOT, rel))
        check("%s names no design card or style guide outside the repository" % rel, not hits, "\n".join(hits))
    others = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
            if rel in docs:
                continue
            for h in forbidden_mentions(os.path.join(dirpath, name)):
                others.append("%s:%s" % (rel, h))
    check("no other file of the repository names a design card or style guide outside it", not others,
          "\n".join(others))
    sys.exit(checks.report())


if __name__ == "__main__":
    main()
