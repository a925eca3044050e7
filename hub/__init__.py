"""Cohub: the integration hub between member districts and their service agency."""
