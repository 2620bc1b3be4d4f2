"""The outside world: HTTP, the command line, and the wiring that builds the application."""
