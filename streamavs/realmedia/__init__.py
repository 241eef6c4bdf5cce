"""Real photographs and recordings from Debian packages: fetch, catalogue, and the real-media object bank.

The media are GPL / CC licensed and never committed: ``streamavs data fetch`` builds them on the
user's machine (see :mod:`streamavs.realmedia.fetch`). Importing this package imports nothing heavy.
"""
