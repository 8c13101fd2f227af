"""Pure protocol: bytes in, values out. No sockets, no clock, no database (a test enforces it)."""
