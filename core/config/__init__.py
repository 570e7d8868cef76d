"""Configuration: environment settings and the three hot-reloaded YAML files."""

from core.config.access import ApiKey, AuthConfig, BucketSpec, QueuePolicy, RateLimitConfig
from core.config.files import ConfigFiles, load_config
from core.config.routing import ModelRoute, RoutingConfig, UpstreamConfig
from core.config.settings import Settings

__all__ = ["ApiKey", "AuthConfig", "BucketSpec", "ConfigFiles", "ModelRoute", "QueuePolicy", "RateLimitConfig",
           "RoutingConfig", "Settings", "UpstreamConfig", "load_config"]
