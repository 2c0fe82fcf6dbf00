"""Configuration: the shipped defaults, overrides from the environment, and clear errors."""

from __future__ import annotations

import os

import pytest

from resilience import BreakerConfig, ConfigError, ResilienceSettings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("NOVA_"):
            monkeypatch.delenv(key)


def by_name(settings: ResilienceSettings) -> dict[str, BreakerConfig]:
    return {config.name: config for config in settings.breaker_configs()}


def test_defaults_match_the_documented_thresholds():
    settings = ResilienceSettings.load()
    configs = by_name(settings)
    assert (configs["rag_api"].fail_max, configs["rag_api"].reset_timeout) == (3, 30.0)
    assert (configs["redis"].fail_max, configs["redis"].reset_timeout) == (5, 15.0)
    assert (configs["voice_processing"].fail_max, configs["voice_processing"].reset_timeout) == (
        2,
        45.0,
    )
    assert all(config.timeout and config.enabled for config in configs.values())
    assert settings.health_port == 8001


def test_environment_overrides_one_knob_and_keeps_the_rest(monkeypatch):
    monkeypatch.setenv("NOVA_BREAKER_RAG_API_FAIL_MAX", "7")
    monkeypatch.setenv("NOVA_BREAKER_RAG_API_RESET_TIMEOUT", "0.5")
    monkeypatch.setenv("NOVA_BREAKER_REDIS_TIMEOUT", "0.25")
    monkeypatch.setenv("NOVA_BREAKER_VOICE_PROCESSING_ENABLED", "false")
    monkeypatch.setenv("NOVA_HEALTH_PORT", "9101")
    settings = ResilienceSettings.load()
    configs = by_name(settings)
    assert (configs["rag_api"].fail_max, configs["rag_api"].reset_timeout) == (7, 0.5)
    assert configs["rag_api"].timeout == 8.0
    assert configs["redis"].timeout == 0.25
    assert configs["redis"].fail_max == 5
    assert configs["voice_processing"].enabled is False
    assert settings.health_port == 9101


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NOVA_BREAKER_RAG_API_FAIL_MAX", "-1"),
        ("NOVA_BREAKER_RAG_API_FAIL_MAX", "0"),
        ("NOVA_BREAKER_RAG_API_FAIL_MAX", "three"),
        ("NOVA_BREAKER_REDIS_RESET_TIMEOUT", "0"),
        ("NOVA_BREAKER_REDIS_RESET_TIMEOUT", "-15"),
        ("NOVA_BREAKER_VOICE_PROCESSING_TIMEOUT", "soon"),
        ("NOVA_BREAKER_REDIS_HALF_OPEN_MAX_CALLS", "0"),
        ("NOVA_HEALTH_PORT", "eighty"),
        ("NOVA_HEALTH_PORT", "70000"),
    ],
)
def test_invalid_values_fail_at_start_up_naming_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        ResilienceSettings.load()
    assert variable in str(error.value)
    assert repr(value) in str(error.value)


def test_a_misspelt_breaker_variable_is_an_error(monkeypatch):
    monkeypatch.setenv("NOVA_BREAKER_RAG_API_FAILMAX", "3")
    with pytest.raises(ConfigError, match="NOVA_BREAKER_RAG_API_FAILMAX"):
        ResilienceSettings.load()


@pytest.mark.parametrize(
    "changes",
    [
        {"fail_max": 0},
        {"fail_max": True},
        {"reset_timeout": -1},
        {"reset_timeout": float("nan")},
        {"timeout": 0},
        {"half_open_max_calls": 0},
        {"name": "has space"},
    ],
)
def test_breaker_config_checks_itself(changes):
    values = {"name": "dep", "fail_max": 3, "reset_timeout": 30.0, "timeout": 1.0} | changes
    with pytest.raises(ConfigError):
        BreakerConfig(**values)


def test_a_breaker_may_have_no_timeout():
    assert BreakerConfig(name="dep", fail_max=1, reset_timeout=1.0, timeout=None).timeout is None
