"""Errors a user can cause. Entry points print them in one line, without a traceback."""


class CnnlabError(Exception):
    """Base class: the message names the input at fault and what is wrong with it."""


class ConfigError(CnnlabError):
    """A configuration value that cannot work (bad geometry, unknown name, ...)."""


class DataError(CnnlabError):
    """An input file that is missing, truncated, corrupt or inconsistent."""


class CheckpointError(CnnlabError):
    """A model checkpoint that is missing or cannot be loaded."""


class TrackingError(CnnlabError):
    """The tracking server cannot be reached when a stage starts."""


class ServiceError(CnnlabError):
    """A service of the shared stack that cannot start, stop or be reached."""


class StageInterrupted(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """SIGINT or SIGTERM reached a stage: it stops, marks its run KILLED, exits 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum
