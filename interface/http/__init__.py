"""The HTTP interface: the JSON API under /api/v1, operations endpoints, and (later) web pages."""
