"""Authentication and authorization: token verification, channel names, permission rules."""
