"""Router modules of the example application: each module defines `router`."""
