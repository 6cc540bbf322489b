"""svcorch: start a stack of services in dependency order, gated on real readiness probes."""

__version__ = "0.1.0"
