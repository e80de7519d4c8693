"""Canary Analyzer: automated canary analysis for Istio."""

__version__ = "0.1.0"
