"""RADIUS: the agent switches talk to (RFC 2865/2866/2869, Cisco VSAs)."""
