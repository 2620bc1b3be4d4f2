"""Server-rendered web pages: Jinja2 templates and a little plain JavaScript (the copy button)."""
