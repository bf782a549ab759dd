"""The pizza orders generator (`streamlane generate --flow orders`)."""

from streamlane.generator import OrderGenerator as Generator

__all__ = ["Generator"]
