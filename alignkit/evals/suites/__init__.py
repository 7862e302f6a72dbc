"""Built-in evaluation suites; importing this package registers them (see alignkit.evals.suite)."""
from alignkit.evals.suites import world_tasks  # noqa: F401
from alignkit.evals.suites import safety  # noqa: F401
from alignkit.evals.suites import over_refusal  # noqa: F401
from alignkit.evals.suites import honesty  # noqa: F401
from alignkit.evals.suites import sycophancy  # noqa: F401
from alignkit.evals.suites import helpfulness  # noqa: F401
from alignkit.evals.suites import style  # noqa: F401
from alignkit.evals.suites import drift  # noqa: F401
from alignkit.evals.suites import tax  # noqa: F401
from alignkit.evals.suites import template_robustness  # noqa: F401
