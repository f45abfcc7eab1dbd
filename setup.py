import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(*parts):
    with open(os.path.join(HERE, *parts), encoding="utf-8") as f:
        return f.read()


VERSION = re.search(r'^__version__ = "([^"]+)"', read("certbot_wwu", "__init__.py"),
                    re.M).group(1)

setup(
    name="certbot-wwu",
    version=VERSION,
    description="Certbot installer that deploys certificates to non-root "
                "services with POSIX ACLs and restarts their systemd units",
    long_description=read("README.md"),
    long_description_content_type="text/markdown",
    # an SPDX expression, and no "License ::" classifier: setuptools >= 77
    # deprecates those classifiers (a warning on every build)
    license="Apache-2.0",
    packages=find_packages(include=["certbot_wwu", "certbot_wwu.*"]),
    python_requires=">=3.6",
    # No zope.interface here, not even as an extra: only certbot < 1.19 needs
    # the zope declarations (certbot_wwu._compat.declare_plugin), and those
    # certbots depend on zope.interface and zope.component themselves (checked
    # on 1.11 and 1.22). certbot >= 2 runs without zope, and the plugin must
    # not pull it in there (make compat checks both).
    install_requires=[
        "certbot>=1.11",
        "acme>=1.11",
        "pylibacl",
    ],
    entry_points={
        "certbot.plugins": [
            "wwu-acl = certbot_wwu.installer:Installer",
        ],
        "console_scripts": [
            "certbot-wwu = certbot_wwu.cli:main",
        ],
    },
    classifiers=[
        "Environment :: Plugins",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Topic :: Security",
        "Topic :: System :: Systems Administration",
    ],
)
