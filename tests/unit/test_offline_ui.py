"""The offline Chainlit frontend: no external links, complete, rebuilt only when needed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from assistant.offline_ui import (
    STAMP_NAME,
    OfflineBuildError,
    build_offline_frontend,
    chainlit_dist,
    external_references,
    is_offline_build,
    rewrite_css,
    rewrite_html,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".chainlit" / "config.toml"
BLOCKING_HOSTS = ("fonts.googleapis.com", "fonts.gstatic.com", "cdn.jsdelivr.net", "katex")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_offline_frontend(tmp_path_factory.mktemp("ui") / "chainlit-frontend")


def test_the_stock_page_links_cdns_that_the_scanner_finds():
    refs = external_references(chainlit_dist() / "index.html")

    assert any("fonts.googleapis.com" in ref for ref in refs)
    assert any("cdn.jsdelivr.net" in ref for ref in refs)


def test_index_html_has_no_external_reference(built):
    html = (built / "index.html").read_text(encoding="utf-8")

    assert external_references(built / "index.html") == []
    assert re.findall(r"https?://", html) == []
    assert not any(host in html for host in BLOCKING_HOSTS)
    assert "preconnect" not in html


def test_index_html_keeps_chainlits_placeholders(built):
    html = (built / "index.html").read_text(encoding="utf-8")

    for marker in ("TAG INJECTION", "JS INJECTION", "CSS INJECTION", "FONT START", "FONT END"):
        assert f"<!-- {marker}" in html


def test_css_has_no_external_reference(built):
    sheets = list(built.rglob("*.css"))
    assert sheets

    for css in sheets:
        text = css.read_text(encoding="utf-8")
        assert external_references(css) == []
        assert "@import" not in text
        # the only absolute URL left is the SVG namespace inside inline data: images
        assert set(re.findall(r"https?://[^'\"\s)]+", text)) <= {"http://www.w3.org/2000/svg"}


def test_every_asset_index_html_references_exists(built):
    html = (built / "index.html").read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="(/assets/[^"]+)"', html)

    assert any(ref.endswith(".js") for ref in refs)
    assert any(ref.endswith(".css") for ref in refs)
    for ref in refs:
        assert (built / ref.lstrip("/")).is_file(), ref
    assert (built / "favicon.svg").is_file()


def test_source_maps_are_left_out(built):
    assert not list(built.rglob("*.map"))


def test_rewrite_drops_every_kind_of_external_tag_and_keeps_local_ones():
    html = """<head>
    <link rel="dns-prefetch" href="//cdn.example.com">
    <link
      rel="preload" as="font" crossorigin
      href="HTTPS://fonts.example.com/inter.woff2"
    />
    <script src='https://cdn.example.com/x.js' defer></script>
    <link rel="stylesheet" href="/assets/app.css">
    <link rel="stylesheet" href="http://localhost:3000/dev.css">
    <script type="module" src="/assets/app.js"></script>
    <script>const global = globalThis;</script>
    </head>"""
    css = (
        '@import url("https://fonts.example.com/css2?family=Inter");\n'
        "@import '//cdn.example.com/katex.css' screen;\n"
        '@import "./local.css";\n'
        "body{color:red}"
    )

    out = rewrite_html(html)

    assert "example.com" not in out
    assert '<link rel="stylesheet" href="/assets/app.css">' in out
    assert "http://localhost:3000/dev.css" in out
    assert '<script type="module" src="/assets/app.js"></script>' in out
    assert "const global = globalThis;" in out
    assert rewrite_css(css) == '@import "./local.css";\nbody{color:red}'


def test_a_current_build_is_not_copied_again(tmp_path):
    target = build_offline_frontend(tmp_path / "fe")
    files = [target / "index.html", target / STAMP_NAME, *target.glob("assets/*.js")]
    before = {f: f.stat().st_mtime_ns for f in files}

    assert build_offline_frontend(tmp_path / "fe") == target
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert is_offline_build(target)


def test_a_build_for_another_chainlit_is_redone(tmp_path):
    target = build_offline_frontend(tmp_path / "fe")
    stamp = (target / STAMP_NAME).read_text(encoding="utf-8")
    (target / STAMP_NAME).write_text("chainlit=0.0.1 rewrite=0\n", encoding="utf-8")
    (target / "leftover.txt").write_text("from the old build", encoding="utf-8")
    assert not is_offline_build(target)

    build_offline_frontend(target)

    assert (target / STAMP_NAME).read_text(encoding="utf-8") == stamp
    assert not (target / "leftover.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["fe"]  # no scratch left behind


def test_a_foreign_directory_is_refused_not_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")

    with pytest.raises(OfflineBuildError, match="not an offline frontend build"):
        build_offline_frontend(tmp_path)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_config_points_chainlit_at_the_offline_build():
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))

    assert config["UI"]["custom_build"] == ".nova/chainlit-frontend"
    assert config["UI"]["name"] == "Nova"
    assert config["features"]["latex"] is False
    assert config["features"]["unsafe_allow_html"] is False
    upload = config["features"]["spontaneous_file_upload"]
    assert upload["enabled"] is True
    assert all(kind.startswith(("audio/", "video/webm")) for kind in upload["accept"])
    assert config["features"]["audio"] == {"enabled": True, "sample_rate": 24000}
    assert config["project"]["user_env"] == []
    assert not Path(config["UI"]["custom_build"]).is_absolute()
    # the served page must not name outside hosts either (Chainlit's defaults do)
    assert not re.match(r"https?://", config["UI"]["custom_meta_url"])
    assert not re.match(r"https?://", config["UI"]["custom_meta_image_url"])


def test_chainlit_resolves_custom_build_against_its_app_root(tmp_path):
    """Chainlit serves its stock page when custom_build is missing, so check the real lookup.

    Importing chainlit writes into its app root, hence a subprocess in a temp dir.
    """
    (tmp_path / ".chainlit").mkdir()
    shutil.copy(CONFIG, tmp_path / ".chainlit" / "config.toml")
    target = build_offline_frontend(tmp_path / ".nova" / "chainlit-frontend")
    env = {**os.environ, "CHAINLIT_APP_ROOT": str(tmp_path)}

    result = subprocess.run(
        [sys.executable, "-c", "import chainlit.server as s; print(s.build_dir)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert Path(result.stdout.strip().splitlines()[-1]).resolve() == target
