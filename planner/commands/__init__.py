"""One module per command: ``register(subparsers)`` adds its parser and handler."""
