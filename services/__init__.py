"""Services that run as processes of their own beside the router."""
