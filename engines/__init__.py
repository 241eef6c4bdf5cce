"""Shipped engines (installed as `streamavs.engines`): model files and their manifests."""
