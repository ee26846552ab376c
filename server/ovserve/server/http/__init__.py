"""The HTTP transport: the only package importing Tornado. See :mod:`.app` for the route table."""
