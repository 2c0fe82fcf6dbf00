"""A copy of Chainlit's frontend that loads nothing from the internet.

Chainlit's stock ``index.html`` links Google Fonts and a KaTeX stylesheet from CDNs. Where
those requests hang (no internet, a firewall that drops packets) the browser never runs the
app and the page stays blank. ``[UI] custom_build`` in ``.chainlit/config.toml`` points
Chainlit at the copy built here instead: the installed frontend with every external
``<link>``, ``<script>`` and ``@import`` removed. The app's own JavaScript and CSS are
unchanged, so the UI uses the system's sans-serif font instead of Inter.

``python -m assistant.offline_ui TARGET`` builds it; a build that is already current for
the installed Chainlit is left alone.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

REWRITE_VERSION = 1
"""Bump when the rewrite rules change, so existing builds are redone."""

STAMP_NAME = ".nova-offline-build"

# Source maps are only fetched by browser developer tools; leaving them out saves 25 MB.
_SKIP = shutil.ignore_patterns("*.map")

_LOOPBACK = r"(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])(?![\w.-])"
# An absolute or protocol-relative URL whose host is not a loopback address.
_EXTERNAL_URL = re.compile(rf"(?:https?:)?//(?!{_LOOPBACK})[\w.-]+", re.IGNORECASE)
_HTTP_URL = re.compile(rf"https?://(?!{_LOOPBACK})[\w.-]+", re.IGNORECASE)

_LINK_TAG = re.compile(r"[ \t]*<link\b[^>]*>[ \t]*\n?", re.IGNORECASE)
_SCRIPT_TAG = re.compile(
    r"[ \t]*<script\b[^>]*\bsrc\s*=[^>]*>\s*</script\s*>[ \t]*\n?", re.IGNORECASE
)
_HREF_OR_SRC = re.compile(r"\b(?:href|src)\s*=\s*([\"']?)([^\"'\s>]+)\1", re.IGNORECASE)
_CSS_IMPORT = re.compile(
    r"@import\s+(?:url\(\s*)?([\"']?)([^\"')\s;]+)\1\s*\)?[^;]*;[ \t]*\n?", re.IGNORECASE
)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
# data: URIs are inline content; the SVGs in Chainlit's CSS name their XML namespace
# (http://www.w3.org/2000/svg), which is an identifier, never fetched.
_CSS_DATA_URI = re.compile(
    r"url\(\s*(?:\"data:[^\"]*\"|'data:[^']*'|data:[^)]*)\s*\)", re.IGNORECASE
)


class OfflineBuildError(RuntimeError):
    """The frontend cannot be made offline-safe, or the target is not ours to replace."""


def chainlit_dist() -> Path:
    """The installed Chainlit's built frontend, found without importing Chainlit.

    Importing ``chainlit`` writes ``.chainlit/`` and ``.files/`` into its app root.
    """
    spec = find_spec("chainlit")
    if spec is None or not spec.submodule_search_locations:
        raise OfflineBuildError("chainlit is not installed")
    dist = Path(next(iter(spec.submodule_search_locations))) / "frontend" / "dist"
    if not (dist / "index.html").is_file():
        raise OfflineBuildError(f"no built frontend at {dist}")
    return dist


def _stamp() -> str:
    return f"chainlit={version('chainlit')} rewrite={REWRITE_VERSION}\n"


def is_offline_build(directory: Path) -> bool:
    """True when ``directory`` holds this module's build for the installed Chainlit.

    Chainlit silently serves its stock (online) frontend when ``custom_build`` does not
    exist, so the app can check ``chainlit.server.build_dir`` with this at start-up.
    """
    stamp = directory / STAMP_NAME
    return (
        stamp.is_file()
        and stamp.read_text(encoding="utf-8") == _stamp()
        and (directory / "index.html").is_file()
    )


def _is_external(url: str) -> bool:
    return _EXTERNAL_URL.match(url) is not None


def _drop_external_tags(tag: re.Pattern[str], html: str) -> str:
    def keep_or_drop(match: re.Match[str]) -> str:
        ref = _HREF_OR_SRC.search(match.group(0))
        return "" if ref and _is_external(ref.group(2)) else match.group(0)

    return tag.sub(keep_or_drop, html)


def rewrite_html(html: str) -> str:
    """Remove ``<link>`` and ``<script src>`` tags that point to another host.

    That covers stylesheets, fonts and preconnect hints; Chainlit's injection
    placeholders (``<!-- ... PLACEHOLDER -->``, ``FONT START``/``END``) are kept.
    """
    html = _drop_external_tags(_LINK_TAG, html)
    return _drop_external_tags(_SCRIPT_TAG, html)


def rewrite_css(css: str) -> str:
    """Remove ``@import`` rules that point to another host."""
    return _CSS_IMPORT.sub(lambda m: "" if _is_external(m.group(2)) else m.group(0), css)


def external_references(path: Path) -> list[str]:
    """Absolute or protocol-relative URLs to non-loopback hosts in an HTML or CSS file.

    Comments and CSS ``data:`` URIs are skipped: browsers fetch neither.
    """
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".css":
        text = _CSS_DATA_URI.sub("url()", _CSS_COMMENT.sub("", text))
        found = [m.group(0) for m in _HTTP_URL.finditer(text)]
        found += [m.group(2) for m in _CSS_IMPORT.finditer(text) if _is_external(m.group(2))]
        found += re.findall(r"url\(\s*[\"']?(//[^\"')\s]+)", text)
    else:
        text = _HTML_COMMENT.sub("", text)
        found = [m.group(0) for m in _HTTP_URL.finditer(text)]
        found += [m.group(2) for m in _HREF_OR_SRC.finditer(text) if _is_external(m.group(2))]
    return sorted(set(found))


def _rewrite_tree(root: Path) -> None:
    index = root / "index.html"
    index.write_text(rewrite_html(index.read_text(encoding="utf-8")), encoding="utf-8")
    for css in root.rglob("*.css"):
        css.write_text(rewrite_css(css.read_text(encoding="utf-8")), encoding="utf-8")
    leftovers = {
        str(path.relative_to(root)): refs
        for path in [index, *root.rglob("*.css")]
        if (refs := external_references(path))
    }
    if leftovers:
        raise OfflineBuildError(f"external references remain after the rewrite: {leftovers}")


def build_offline_frontend(target: Path) -> Path:
    """Copy the installed Chainlit frontend to ``target`` without external references.

    Skipped when ``target`` already holds a current build. The copy is made beside
    ``target`` and swapped in, so a failed build never leaves a half-written frontend.
    A non-empty ``target`` that is not an earlier build is refused rather than deleted.
    """
    target = target.resolve()
    if is_offline_build(target):
        return target
    ours = (target / STAMP_NAME).is_file()
    if target.exists() and not ours and (not target.is_dir() or any(target.iterdir())):
        raise OfflineBuildError(f"{target} exists and is not an offline frontend build")

    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build = scratch / "build"
        shutil.copytree(chainlit_dist(), build, ignore=_SKIP)
        _rewrite_tree(build)
        (build / STAMP_NAME).write_text(_stamp(), encoding="utf-8")
        if target.exists():
            os.replace(target, scratch / "old")
        os.replace(build, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m assistant.offline_ui TARGET``: build the offline frontend into TARGET."""
    parser = argparse.ArgumentParser(
        prog="python -m assistant.offline_ui",
        description="Build a copy of Chainlit's frontend that loads nothing from the internet.",
    )
    parser.add_argument("target", type=Path, help="directory to build into")
    args = parser.parse_args(argv)
    target: Path = args.target
    was_current = is_offline_build(target)
    try:
        built = build_offline_frontend(target)
    except OfflineBuildError as exc:
        parser.exit(2, f"offline_ui: {exc}\n")
    state = "already current" if was_current else "built"
    print(f"offline Chainlit {version('chainlit')} frontend {state}: {built}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
