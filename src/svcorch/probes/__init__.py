"""Readiness probes. Client libraries load only inside the probe that uses them."""
