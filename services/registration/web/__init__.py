"""The member web portal of the registration service (server-rendered HTML, no JavaScript).

`WebPortal(...).install(app)` mounts it on the registration's aiohttp app;
see the registration README ("The web portal") for pages, settings and tests.
"""

from services.registration.web.portal import WebPortal
from services.registration.web.settings import WebSettings

__all__ = ["WebPortal", "WebSettings"]
