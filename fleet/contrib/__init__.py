"""Integrations with other frameworks (Django), each usable only with its optional extra."""
