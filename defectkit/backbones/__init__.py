"""Pretrained feature extractors, created by name from one registry."""

from .base import Backbone
from .registry import create_backbone, list_backbones, register_backbone

__all__ = ["Backbone", "create_backbone", "list_backbones", "register_backbone"]
