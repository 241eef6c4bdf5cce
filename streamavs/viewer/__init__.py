"""A live browser view of the mask stream: ``streamavs view ADDR`` (and ``streamavs run --view PORT``).

* :mod:`~streamavs.viewer.hub`: what the viewer knows of the stream, one latest-only slot per browser.
* :mod:`~streamavs.viewer.bridge`: the thread that receives masks, preview frames and heartbeats.
* :mod:`~streamavs.viewer.server`: the aiohttp app (page, JS modules, WebSocket) and ViewerServer.
* ``static/``: the page: plain HTML, CSS and JS modules, no build step, nothing from elsewhere.

The viewer is a runtime tool: it imports neither torch nor training code. Importing this package
starts nothing and does not import aiohttp (the server module does).
"""

from streamavs.viewer.hub import ViewerConfig

__all__ = ["ViewerConfig"]
