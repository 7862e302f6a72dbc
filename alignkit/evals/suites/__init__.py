"""Built-in evaluation suites; importing this package registers them (see alignkit.evals.suite)."""
from alignkit.evals.suites import world_tasks  # noqa: F401
