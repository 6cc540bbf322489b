"""`svcorch web`: an HTTP API, Prometheus metrics and one page, served beside the daemon.

A separate process that talks to the daemon over its control socket, as the CLI does (see
docs/web.md for why it does not live inside the daemon). ``security`` decides who may do
what, ``backend`` turns requests into daemon requests and file reads, ``server`` is the
HTTP layer, ``metrics`` the Prometheus exposition, ``openapi`` the API's description.
"""
