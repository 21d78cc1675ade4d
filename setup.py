"""Packaging for RouteMQ for systemd.

Runtime dependencies are exactly the four libraries Debian ships as python3-* packages,
so the .deb can depend on the distribution's own builds.
"""
from setuptools import find_packages, setup

setup(
    name="routemq",
    version="0.1.0",
    description="Route MQTT messages to Python handlers; scale with shared subscriptions "
    "across systemd-managed worker instances",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["routemq", "routemq.*"]),
    install_requires=[
        "paho-mqtt>=1.6.1",
        "sdnotify>=0.3.1",
        "python-json-logger>=2.0.1",
        "configargparse>=1.5.3",
    ],
    entry_points={"console_scripts": ["routemq = routemq.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Topic :: System :: Networking",
    ],
)
