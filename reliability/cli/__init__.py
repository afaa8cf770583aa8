"""The ``reliability`` command line."""
