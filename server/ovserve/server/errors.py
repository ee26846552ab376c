"""Domain errors of the model server. No HTTP knowledge here.

Each error carries the OVMS status text as its message (``str(err)``), so every protocol can
show it; the HTTP layer holds one table per protocol mapping these classes to status codes
(like OVMS's ``httpStatusMap``). Raised by the manager, the codecs and the validation layer.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base class; ``str(err)`` is the message a client sees."""

    default_message = "Internal server error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self.args[0])


class ModelNotFound(ServingError):
    default_message = "Model with requested name is not found"


class VersionNotFound(ServingError):
    default_message = "Model with requested version is not found"


class ModelUnavailable(VersionNotFound):
    """A configured model with no version to serve, and a reason: its base path is missing or
    its storage cannot be read. The message is that reason (answered as VersionNotFound is)."""


class ModelNotLoadedYet(ServingError):
    default_message = "Model with requested version is not loaded yet"


class ModelRetired(ServingError):
    default_message = "Model with requested version is retired"


class InvalidInput(ServingError):
    """Anything wrong with a request's content: structure, names, shapes, dtypes, values."""

    default_message = "Invalid input"


class InvalidJson(ServingError):
    """The body is not valid JSON (OVMS answers 412 for this)."""

    default_message = "The file is not valid json"


class RequestTooLarge(ServingError):
    default_message = "Request body is too large"


class UnsupportedFeature(ServingError):
    default_message = "Requested feature is not supported"


class InferenceFailed(ServingError):
    """The runtime failed while executing a valid request."""

    default_message = "Inference failed"


class ModelLoadError(ServingError):
    """A model version could not be loaded; the text is shown in its status."""

    default_message = "Cannot load model"


class ServerNotReady(ServingError):
    default_message = "Server is not ready"
