"""Discrete-event what-if simulation through the live placement code."""
