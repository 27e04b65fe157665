"""The member web portal of the registration service (server-rendered HTML, no JavaScript).

`web.portal.WebPortal(...).install(app)` mounts it on the registration's aiohttp app; the pages live
in one module per area (`pages_*.py`). See the registration README ("The web portal") for pages,
settings and tests. Nothing is imported here, so the JSON API can use `web.rendering` for its one
HTML page without pulling in the portal.
"""
