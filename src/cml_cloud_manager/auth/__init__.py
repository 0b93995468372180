"""Who is calling, and what their role allows: token, OIDC and (loopback only) no authentication."""
