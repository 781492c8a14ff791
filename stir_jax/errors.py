"""The one error type of user-facing problems (bad settings, run directories, input files)."""


class RunError(RuntimeError):
  """A problem with the run's inputs or directory; the entry points print it as one line."""


class RunBusy(RunError):
  """Another process is training the run directory (it holds the directory's lock)."""
