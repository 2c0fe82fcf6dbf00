"""The voice benchmark runs end to end and prints every figure (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_every_section_and_the_targets():
    result = subprocess.run(
        [sys.executable, "bench/voice.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    out = result.stdout
    assert "Traceback" not in result.stderr
    for label in (
        "Engine load:",
        "WhisperSTT()",
        "PiperTTS()",
        "EngineWorker(beam 1)",
        "EngineWorker(beam 5)",
        "STT real-time factor:",
        "TTS:",
        "PiperTTS.synthesize",
        "EngineWorker.synthesize",
        "through VoiceService.speak",
        "first audio chunk",
        "whole reply",
        "End-to-end voice turn:",
        "Runtime.start()",
        "machine:",
        "load average",
        "run time:",
    ):
        assert label in out, label
    for clip in ("~2 s", "~5 s", "~10 s"):
        for path in ("in-process", "worker"):
            for beam in (1, 5):
                assert any(
                    line.startswith(clip) and f" {path} " in line and f" {beam} " in line
                    for line in out.splitlines()
                ), (clip, path, beam)
    for question in ("q1", "q2", "q3"):
        assert any(line.startswith(f"{question} ") for line in out.splitlines()), question
    assert "target: RTF < 0.3 on every clip" in out
    assert "target: < 0.5 s for a 15-word sentence" in out
    assert out.count("PASS") + out.count("MISS") == 6
