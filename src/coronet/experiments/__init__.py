"""Experiments as users run them: the demo, the shortcut study, comparing experiments."""
