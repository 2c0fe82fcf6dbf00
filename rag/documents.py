"""Reading the knowledge base: Markdown, plain text, HTML and PDF files into sections.

A section is a heading and the prose under it; chunking never crosses a section, so a
chunk talks about one thing and carries its heading. Unreadable files are reported and
skipped, never fatal: one broken PDF must not stop an ingest of a thousand files.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bs4 import BeautifulSoup
from pypdf import PdfReader
from pypdf.errors import DependencyError, PyPdfError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Document",
    "DocumentError",
    "Section",
    "display_source",
    "file_digest",
    "find_files",
    "read_document",
]

SUPPORTED_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".html", ".htm", ".pdf"})

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)(?:\s+#+)?\s*$")
_MD_FENCE = re.compile(r"^\s*(```|~~~)")
_MD_NOISE = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images: keep the alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links: keep the text
    (re.compile(r"`([^`]+)`"), r"\1"),
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<!\w)_(?![\s_])(.+?)(?<![\s_])_(?!\w)"), r"\1"),
    (re.compile(r"^[ \t]*>[ \t]?", re.MULTILINE), ""),
    (re.compile(r"^[ \t]*([-*+]|\d+[.)])[ \t]+", re.MULTILINE), ""),
    (re.compile(r"^[ \t]*\|?[ \t:|-]+\|[ \t:|-]*$", re.MULTILINE), ""),  # table rules
]
_HTML_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_HTML_BLOCKS = ("p", "li", "pre", "td", "th", "dd", "dt", "blockquote", "figcaption")


class DocumentError(ValueError):
    """A file that cannot be read as a document; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Section:
    """A heading (empty before the first one) and the plain text under it."""

    heading: str
    text: str


@dataclass(frozen=True, slots=True)
class Document:
    """One source file, read into titled sections."""

    source: str
    title: str
    sections: tuple[Section, ...]


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes: what decides whether a re-ingest must re-read it."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def display_source(path: Path) -> str:
    """The path as users see it: relative to the working directory when inside it."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def find_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Supported files among ``paths`` and, recursively, in folders; hidden ones skipped."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    candidate = Path(root, name)
                    if not name.startswith(".") and candidate.suffix.lower() in SUPPORTED_SUFFIXES:
                        yield candidate.resolve()
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
                raise DocumentError(f"{path}: unsupported file type (supported: {supported})")
            yield path.resolve()
        else:
            raise DocumentError(f"{path}: no such file or folder")


def read_document(path: Path, source: str | None = None) -> Document:
    """Read one file by its suffix; raises ``DocumentError`` when it cannot be read."""
    source = source or display_source(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".pdf":
            title, sections = _read_pdf(path)
        else:
            raw = path.read_text(encoding="utf-8", errors="replace")
            if suffix in (".html", ".htm"):
                title, sections = _read_html(raw)
            elif suffix in (".md", ".markdown"):
                title, sections = _read_markdown(raw)
            else:
                title, sections = _read_text(raw)
    except (OSError, PyPdfError, DependencyError) as exc:  # DependencyError: encrypted PDFs
        raise DocumentError(f"{source}: cannot read: {exc}") from exc
    kept = tuple(s for s in sections if s.text)
    if not kept:
        raise DocumentError(f"{source}: no text found")
    return Document(source=source, title=title or _title_from_name(path), sections=kept)


def _title_from_name(path: Path) -> str:
    return re.sub(r"[-_]+", " ", path.stem).strip().capitalize()


def _clean(text: str) -> str:
    """Collapse runs of spaces inside lines; keep paragraph breaks as blank lines."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def _read_markdown(raw: str) -> tuple[str, list[Section]]:
    title = ""
    sections: list[Section] = []
    heading, lines = "", []
    in_fence = False
    for line in raw.splitlines():
        if _MD_FENCE.match(line):
            in_fence = not in_fence
            lines.append("")
            continue
        match = None if in_fence else _MD_HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        sections.append(Section(heading, _markdown_text(lines)))
        heading, lines = match.group(2).strip(), []
        if not title and len(match.group(1)) == 1:
            title = heading
    sections.append(Section(heading, _markdown_text(lines)))
    return title, sections


def _markdown_text(lines: list[str]) -> str:
    text = "\n".join(lines)
    for pattern, replacement in _MD_NOISE:
        text = pattern.sub(replacement, text)
    return _clean(text.replace("|", " "))


def _first_line_title(raw: str) -> str:
    """The first non-blank line of ``raw``, if short enough to be a title."""
    first = next((" ".join(line.split()) for line in raw.splitlines() if line.strip()), "")
    return first if len(first) <= 120 else ""


def _read_text(raw: str) -> tuple[str, list[Section]]:
    return _first_line_title(raw), [Section("", _clean(raw))]


def _read_html(raw: str) -> tuple[str, list[Section]]:
    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup(["script", "style", "nav", "header", "footer", "noscript", "template"]):
        tag.decompose()
    title = " ".join(soup.title.get_text(" ").split()) if soup.title else ""
    sections: list[Section] = []
    heading = ""
    parts: list[str] = []
    for element in soup.find_all([*_HTML_HEADINGS, *_HTML_BLOCKS]):
        if element.find_parent(_HTML_BLOCKS):
            continue  # nested block: its text is in its parent's
        text = " ".join(element.get_text(" ").split())
        if element.name in _HTML_HEADINGS:
            sections.append(Section(heading, _clean("\n\n".join(parts))))
            heading, parts = text, []
            title = title or (text if element.name == "h1" else "")
        elif text:
            parts.append(text)
    sections.append(Section(heading, _clean("\n\n".join(parts))))
    return title, sections


def _read_pdf(path: Path) -> tuple[str, list[Section]]:
    reader = PdfReader(path)
    title = ""
    if reader.metadata is not None and reader.metadata.title:
        title = str(reader.metadata.title)
    sections = []
    for number, page in enumerate(reader.pages, start=1):
        raw = page.extract_text() or ""
        if not title and number == 1:
            title = _first_line_title(raw)
        sections.append(Section(f"page {number}", _clean(raw)))
    return title, sections
