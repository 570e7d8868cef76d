"""Built-in stages of the request chain, registered through the same hooks as third-party plugins."""
