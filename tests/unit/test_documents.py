"""Reading the knowledge base: Markdown, text, HTML and PDF into titled sections; finding files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fpdf import FPDF

from rag.documents import (
    SUPPORTED_SUFFIXES,
    Document,
    DocumentError,
    display_source,
    file_digest,
    find_files,
    read_document,
)

pytestmark = pytest.mark.unit


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def headings(document: Document) -> list[str]:
    return [section.heading for section in document.sections]


def all_text(document: Document) -> str:
    return "\n\n".join(section.text for section in document.sections)


def section(document: Document, heading: str) -> str:
    matches = [s.text for s in document.sections if s.heading == heading]
    assert len(matches) == 1, f"expected one section {heading!r}, got {headings(document)}"
    return matches[0]


# --- Markdown -------------------------------------------------------------------------

MARKDOWN = """\
Intro paragraph before any heading.

# Guide Title

Some **bold words** and __underlined words__ with a [link text](https://example.com/page)
and an image ![alt words](images/pic.png) and `inline code` here.

## Install

- first item
* second item
+ third item
1. numbered item
2) other numbered item

> quoted wisdom

| Name  | Value |
|-------|:-----:|
| alpha | one   |

```python
# not a heading inside a fence
print("fenced")
```

~~~
## also not a heading
~~~

## Usage ##

Use it daily.
"""


@pytest.fixture
def markdown_doc(tmp_path) -> Document:
    return read_document(write(tmp_path / "guide.md", MARKDOWN))


def test_markdown_title_is_the_first_level_one_heading(markdown_doc):
    assert markdown_doc.title == "Guide Title"


def test_markdown_has_one_section_per_heading_in_order(markdown_doc):
    assert headings(markdown_doc) == ["", "Guide Title", "Install", "Usage"]
    assert section(markdown_doc, "") == "Intro paragraph before any heading."
    assert section(markdown_doc, "Usage") == "Use it daily."


def test_markdown_fenced_code_does_not_create_headings(markdown_doc):
    install = section(markdown_doc, "Install")
    assert "not a heading inside a fence" in install
    assert "also not a heading" in install
    assert 'print("fenced")' in install
    assert "```" not in all_text(markdown_doc)
    assert "~~~" not in all_text(markdown_doc)


def test_markdown_inline_markup_is_stripped_keeping_the_words(markdown_doc):
    body = section(markdown_doc, "Guide Title")
    assert body == (
        "Some bold words and underlined words with a link text "
        "and an image alt words and inline code here."
    )
    for kept in ("bold words", "underlined words", "link text", "alt words", "inline code"):
        assert kept in body
    for noise in ("**", "__", "](", "![", "https://", "pic.png", "`"):
        assert noise not in body


def test_markdown_list_markers_quotes_and_table_rules_are_stripped(markdown_doc):
    install = section(markdown_doc, "Install")
    for kept in (
        "first item",
        "second item",
        "third item",
        "numbered item",
        "other numbered item",
        "quoted wisdom",
        "alpha",
        "one",
        "Name",
        "Value",
    ):
        assert kept in install
    for noise in ("- first", "* second", "+ third", "1.", "2)", ">", "|", "---", ":-"):
        assert noise not in install


def test_markdown_title_skips_lower_level_headings(tmp_path):
    path = write(tmp_path / "a.md", "## Sub first\n\nText.\n\n# Real Title\n\nMore.\n")
    document = read_document(path)
    assert document.title == "Real Title"
    assert headings(document) == ["Sub first", "Real Title"]


def test_markdown_without_level_one_heading_is_titled_from_the_file_name(tmp_path):
    document = read_document(write(tmp_path / "my-notes_file.md", "## Only sub\n\nText.\n"))
    assert document.title == "My notes file"


def test_markdown_empty_sections_are_dropped(tmp_path):
    path = write(tmp_path / "a.md", "# Title\n\n## Empty\n\n## Full\n\nContent.\n")
    document = read_document(path)
    assert headings(document) == ["Full"]
    assert document.title == "Title"


def test_markdown_heading_ending_in_hash_keeps_it(tmp_path):
    document = read_document(write(tmp_path / "a.md", "# C#\n\nAbout the language.\n"))
    assert document.title == "C#"


def test_markdown_paragraph_break_before_a_list_is_kept(tmp_path):
    path = write(tmp_path / "a.md", "Intro text\n\n- item one\n- item two\n\n> quoted\n")
    text = read_document(path).sections[0].text
    assert text.split("\n\n") == ["Intro text", "item one item two", "quoted"]


def test_markdown_single_star_emphasis_is_stripped(tmp_path):
    path = write(tmp_path / "a.md", "Some *italic* and _slanted_ words, snake_case kept.\n")
    assert read_document(path).sections[0].text == (
        "Some italic and slanted words, snake_case kept."
    )


# --- plain text -----------------------------------------------------------------------


def test_text_title_is_the_first_short_line(tmp_path):
    path = write(tmp_path / "a.txt", "Short title line\n\nBody   paragraph one.\nSame one.\n\nTwo.")
    document = read_document(path)
    assert document.title == "Short title line"
    assert headings(document) == [""]
    assert document.sections[0].text == (
        "Short title line\n\nBody paragraph one. Same one.\n\nTwo."
    )


def test_text_with_a_long_first_line_is_titled_from_the_file_name(tmp_path):
    long_line = " ".join(["word"] * 40)  # 199 characters
    document = read_document(write(tmp_path / "release_notes.txt", long_line + "\n\nMore."))
    assert document.title == "Release notes"


def test_text_title_is_the_first_line_even_without_a_blank_line_after_it(tmp_path):
    path = write(tmp_path / "a.txt", "My Title\nThe body starts right here.\n")
    assert read_document(path).title == "My Title"


# --- HTML -----------------------------------------------------------------------------

HTML = """\
<!doctype html>
<html><head>
<title>Page Title</title>
<style>.secretstyle { color: red }</style>
<script>var secretScript = 1;</script>
</head><body>
<nav><ul><li><a href="/">Navigation link</a></li></ul></nav>
<header><p>Site banner</p></header>
<p>Intro para.<script>secretInline();</script><style>p { secretInlineStyle: 1 }</style></p>
<h1>Main Heading</h1>
<p>First para.</p>
<ul><li><p>Nested paragraph text.</p></li><li>Plain item.</li></ul>
<h2>Second</h2>
<table><tr><th>Key</th><td><p>Cell paragraph.</p></td></tr></table>
<h3>Third</h3><p>Third para.</p>
<h4>Fourth</h4><p>Fourth para.</p>
<h5>Fifth</h5><p>Fifth para.</p>
<h6>Sixth</h6><blockquote><p>Quoted text.</p></blockquote>
<footer><p>Footer text</p></footer>
<noscript><p>Enable scripts</p></noscript>
<template><p>Template text.</p></template>
</body></html>
"""


@pytest.fixture
def html_doc(tmp_path) -> Document:
    return read_document(write(tmp_path / "page.html", HTML))


def test_html_title_comes_from_the_title_tag(html_doc):
    assert html_doc.title == "Page Title"


def test_html_sections_split_at_every_heading_level(html_doc):
    assert headings(html_doc) == ["", "Main Heading", "Second", "Third", "Fourth", "Fifth", "Sixth"]
    assert section(html_doc, "") == "Intro para."
    assert section(html_doc, "Third") == "Third para."
    assert section(html_doc, "Sixth") == "Quoted text."


def test_html_script_style_nav_and_chrome_are_removed(html_doc):
    text = all_text(html_doc)
    for removed in (
        "secretScript",
        "secretstyle",
        "secretInline",
        "Navigation link",
        "Site banner",
        "Footer text",
        "Enable scripts",
        "Template text",
    ):
        assert removed not in text


def test_html_nested_blocks_are_not_duplicated(html_doc):
    text = all_text(html_doc)
    assert text.count("Nested paragraph text.") == 1
    assert text.count("Cell paragraph.") == 1
    assert text.count("Quoted text.") == 1
    assert section(html_doc, "Main Heading") == (
        "First para.\n\nNested paragraph text.\n\nPlain item."
    )
    assert section(html_doc, "Second") == "Key\n\nCell paragraph."


def test_html_title_and_headings_collapse_wrapped_whitespace(tmp_path):
    html = "<title>\n  Page\n  Title\n</title><h2>Wrapped\n    heading</h2><p>Text.</p>"
    document = read_document(write(tmp_path / "a.html", html))
    assert (document.title, headings(document)) == ("Page Title", ["Wrapped heading"])


def test_html_without_title_tag_uses_the_first_h1(tmp_path):
    html = "<body><h2>Sub</h2><p>A.</p><h1>Real Heading</h1><p>B.</p><h1>Later</h1><p>C.</p>"
    document = read_document(write(tmp_path / "a.htm", html))
    assert document.title == "Real Heading"
    assert headings(document) == ["Sub", "Real Heading", "Later"]


def test_html_without_title_or_h1_is_titled_from_the_file_name(tmp_path):
    document = read_document(write(tmp_path / "faq-page.html", "<h2>Q</h2><p>Answer.</p>"))
    assert document.title == "Faq page"


# --- PDF ------------------------------------------------------------------------------

PAGE_ONE = "The first page talks about apples. Apples are red and crisp."
PAGE_TWO = "The second page talks about pears. Pears are green and soft."


def make_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    pdf = FPDF()
    if title is not None:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(path))
    return path


def test_pdf_pages_become_sections_and_title_comes_from_metadata(tmp_path):
    path = make_pdf(tmp_path / "fruit.pdf", [PAGE_ONE, PAGE_TWO], title="Fruit Handbook")
    document = read_document(path)
    assert document.title == "Fruit Handbook"
    assert headings(document) == ["page 1", "page 2"]
    assert PAGE_ONE in document.sections[0].text
    assert PAGE_TWO in document.sections[1].text
    assert "pears" not in document.sections[0].text
    assert "apples" not in document.sections[1].text


def test_pdf_blank_page_is_dropped_and_numbering_keeps_the_real_page(tmp_path):
    path = make_pdf(tmp_path / "gap.pdf", [PAGE_ONE, "", PAGE_TWO], title="Gap")
    document = read_document(path)
    assert headings(document) == ["page 1", "page 3"]
    assert PAGE_TWO in document.sections[1].text


def test_pdf_without_metadata_title_uses_the_first_line(tmp_path):
    path = make_pdf(tmp_path / "untitled.pdf", ["Short Heading\nBody line one here. More."])
    assert read_document(path).title == "Short Heading"


def test_broken_pdf_raises_document_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"this is not a pdf \x00\x01\x02\xff" * 50)
    with pytest.raises(DocumentError) as excinfo:
        read_document(path)
    message = str(excinfo.value)
    assert "broken.pdf" in message
    assert "cannot read" in message


def test_truncated_pdf_raises_document_error(tmp_path):
    good = make_pdf(tmp_path / "good.pdf", [PAGE_ONE], title="Good")
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DocumentError, match=r"cut\.pdf: cannot read"):
        read_document(cut)


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.txt", ""),
        ("blank.md", "   \n\n\t\n"),
        ("headings-only.md", "# Title\n\n## Sub\n"),
        ("scripts.html", "<script>var x = 1;</script><nav><p>menu</p></nav>"),
    ],
)
def test_file_without_text_raises_no_text_found(tmp_path, name, content):
    path = write(tmp_path / name, content)
    with pytest.raises(DocumentError, match="no text found") as excinfo:
        read_document(path)
    assert name in str(excinfo.value)


def test_error_message_uses_the_given_source(tmp_path):
    path = write(tmp_path / "empty.txt", "")
    with pytest.raises(DocumentError, match=r"^kb/empty\.txt: no text found$"):
        read_document(path, source="kb/empty.txt")


def test_reading_a_missing_file_raises_document_error(tmp_path):
    with pytest.raises(DocumentError, match=r"missing\.md: cannot read"):
        read_document(tmp_path / "missing.md")


def test_find_files_rejects_an_explicit_unsupported_file(tmp_path):
    path = write(tmp_path / "data.csv", "a,b\n1,2\n")
    with pytest.raises(DocumentError, match=r"data\.csv: unsupported file type") as excinfo:
        list(find_files([path]))
    for suffix in SUPPORTED_SUFFIXES:
        assert suffix in str(excinfo.value)


def test_find_files_rejects_a_missing_path(tmp_path):
    with pytest.raises(DocumentError, match=r"nowhere: no such file or folder"):
        list(find_files([tmp_path / "nowhere"]))


# --- finding files --------------------------------------------------------------------


def test_find_files_recurses_skips_hidden_and_unsupported_in_sorted_order(tmp_path):
    root = tmp_path / "kb"
    # created in reverse of the expected order, so sorting is what puts them right
    for relative in (
        "sub/deeper/e.pdf",
        "sub/c.html",
        "sub/.d.md",
        "sub/notes.docx",
        ".git/x.md",
        ".cache/deep/y.txt",
        "z.htm",
        "skip.csv",
        "b.markdown",
        "a.txt",
        ".hidden.md",
        "README",
        "A.MD",
    ):
        write(root / relative, "Text.")
    expected = [
        root / "A.MD",
        root / "a.txt",
        root / "b.markdown",
        root / "z.htm",
        root / "sub" / "c.html",
        root / "sub" / "deeper" / "e.pdf",
    ]
    found = list(find_files([root]))
    assert found == [p.resolve() for p in expected]
    assert list(find_files([root])) == found
    assert all(p.is_absolute() for p in found)


def test_find_files_keeps_argument_order_and_accepts_files_and_folders(tmp_path):
    single = write(tmp_path / "single.txt", "One.")
    folder = tmp_path / "folder"
    write(folder / "inner.md", "Two.")
    assert list(find_files([single, folder])) == [single.resolve(), (folder / "inner.md").resolve()]
    assert list(find_files([folder, single])) == [(folder / "inner.md").resolve(), single.resolve()]


def test_find_files_on_an_empty_folder_yields_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    assert list(find_files([tmp_path / "empty"])) == []


# --- digest and display -----------------------------------------------------------------


def test_file_digest_is_sha256_and_changes_with_content(tmp_path):
    path = write(tmp_path / "a.md", "version one")
    first = file_digest(path)
    assert first == hashlib.sha256(b"version one").hexdigest()
    assert file_digest(path) == first
    path.write_text("version two", encoding="utf-8")
    assert file_digest(path) != first
    assert file_digest(path) == hashlib.sha256(b"version two").hexdigest()


def test_file_digest_covers_every_block_of_a_large_file(tmp_path):
    data = bytes(range(256)) * (3 * 4096 + 7)  # > 3 MiB, several read blocks
    path = tmp_path / "big.pdf"
    path.write_bytes(data)
    before = file_digest(path)
    assert before == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1] + b"\x00")  # only the very last byte differs
    assert file_digest(path) != before


def test_display_source_is_relative_inside_the_working_directory(tmp_path, monkeypatch):
    work = tmp_path / "work"
    path = write(work / "docs" / "guide.md", "# Guide\n\nText.\n")
    monkeypatch.chdir(work)
    assert display_source(path) == "docs/guide.md"
    assert display_source(Path("docs/guide.md")) == "docs/guide.md"
    assert read_document(path).source == "docs/guide.md"


def test_display_source_is_absolute_outside_the_working_directory(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    outside = write(tmp_path / "elsewhere" / "b.md", "Text.")
    monkeypatch.chdir(work)
    shown = display_source(outside)
    assert shown == outside.resolve().as_posix()
    assert Path(shown).is_absolute()
    assert display_source(Path("../elsewhere/b.md")) == shown
