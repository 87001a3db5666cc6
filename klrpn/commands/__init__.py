"""Sub-commands of the ``klrpn`` console command, one module each.

Every module here defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit status.
"""
