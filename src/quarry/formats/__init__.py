"""Parsers: text sources, access logs, ``ip,ts`` CSV, IP addresses, dispatcher configs."""
