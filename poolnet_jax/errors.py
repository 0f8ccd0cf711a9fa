"""The base of every mistake of the user's: what the command-line tools print as one line.

Library rooms raise it (or a subclass naming the problem) for a wrong file, flag or
config; the CLIs (`poolnet_jax.cli`) turn it into `error: ...` and exit status 2.
"""


class UserError(ValueError):
  """A mistake of the user's, with a message that says what to do."""
