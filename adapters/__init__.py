"""Upstream adapters: in-process models (``local``) and HTTP upstreams."""
