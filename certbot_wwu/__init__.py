"""certbot-wwu: deploy certbot's certificates to services that do not run as root."""

__version__ = "0.1.0"
