"""Sphinx configuration for certbot-wwu."""
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "..", "certbot_wwu", "__init__.py")) as f:
    release = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

project = "certbot-wwu"
author = "certbot-wwu contributors"
copyright = "2026, " + author
version = release
extensions = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
man_pages = [
    ("man/certbot-wwu", "certbot-wwu",
     "deploy certbot certificates to non-root services", [author], 1),
]
