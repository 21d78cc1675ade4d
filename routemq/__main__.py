"""`python -m routemq` is the `routemq` command."""
import sys

from routemq.cli import main

sys.exit(main())
