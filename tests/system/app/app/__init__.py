"""Application the system tests install in /srv/routemq: each route exercises one unit behaviour."""
