"""Configuration: environment settings and the three hot-reloaded YAML files."""

from core.config.access import ApiKey, AuthConfig
from core.config.files import ConfigFiles, load_config
from core.config.limits import LimitsSection, RateLimitConfig
from core.config.routing import ModelRoute, RoutingConfig, UpstreamConfig
from core.config.settings import Settings

__all__ = ["ApiKey", "AuthConfig", "ConfigFiles", "LimitsSection", "ModelRoute", "RateLimitConfig", "RoutingConfig",
           "Settings", "UpstreamConfig", "load_config"]
