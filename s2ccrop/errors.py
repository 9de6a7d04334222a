"""Errors that s2ccrop raises on purpose. Each carries a message fit for one line on stderr."""


class S2CCropError(Exception):
    """Base class of every error s2ccrop raises deliberately."""


class InputError(S2CCropError):
    """An input photo cannot be read or used (unreadable, not an image, too many pixels, ...)."""


class ConfigError(S2CCropError, ValueError):
    """A setting is invalid: a malformed ratio, size, template, device, ..."""


class WeightsError(S2CCropError):
    """Weights are missing, corrupt, untrusted or do not fit the model."""
