"""Turning a novel's text into a storyboard: chapter splitting and the analyzers."""
