"""A test-only Django app added to a copy of examples/django: tasks that report which
database connection they use, and a command that records when a task is published."""
