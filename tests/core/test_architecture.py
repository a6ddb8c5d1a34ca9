"""The shape of the code: no import circles, the core never reaches into the feature apps (only the
portal may), a small top level in billing_console/, and no oversized modules.

Read from the source with `ast` (nothing is imported), so a violation fails here before it shows up
as a confusing ImportError or a tangled change somewhere else.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_APPS = ("billing_console", "deployments", "licensing", "dunning")
FEATURE_APPS = ("licensing", "deployments", "dunning")
MAX_TOP_LEVEL_MODULES = 15
MAX_LINES = 500
# Where long files are allowed: stand-ins, tests, benchmarks and generated migrations.
LONG_FILES_ALLOWED = ("sandbox", "tests", "bench", ".venv")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    modules = {}
    for app in PROJECT_APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                modules[_module_name(path)] = path
    return modules


def _imports(path: Path, *, module_level_only: bool) -> list[tuple[str, str | None]]:
    """(module, imported name) pairs; name is None for `import x.y`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.module, alias.name) for alias in node.names)
    return found


def _import_graph() -> dict[str, set[str]]:
    modules = _project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, imported in _imports(path, module_level_only=True):
            # `from pkg import mod` depends on pkg.mod when that is a module, else on pkg itself.
            target = f"{module}.{imported}" if imported and f"{module}.{imported}" in modules else module
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_among_project_modules():
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_never_imports_a_feature_app_outside_the_portal():
    offenders = []
    for name, path in _project_modules().items():
        if not name.startswith("billing_console") or name.startswith("billing_console.portal"):
            continue
        for module, _ in _imports(path, module_level_only=False):
            if module.split(".")[0] in FEATURE_APPS:
                offenders.append(f"{name} imports {module}")
    assert offenders == []


def test_billing_console_keeps_a_small_top_level():
    top_level = sorted(p.name for p in (ROOT / "billing_console").glob("*.py"))
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level


def test_no_module_outside_sandbox_tests_and_bench_is_over_500_lines():
    too_long = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in LONG_FILES_ALLOWED or "migrations" in parts or "node_modules" in parts:
            continue
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {lines}")
    assert too_long == []


# --- One vocabulary, one way to act --------------------------------------------------------------
def _source_files(*, services_only: bool = False):
    for path in _project_modules().values():
        if "management" in path.parts or "tests" in path.parts:
            continue
        if services_only and not _is_service_module(path):
            continue
        yield path, path.read_text()


SERVICE_MODULE_NAMES = {"services.py", "sending.py", "push.py", "releases.py", "checkout.py", "subscriptions.py",
                        "inbox.py", "catch_up.py", "reconciliation.py", "ledger.py", "backups.py", "rebuild.py"}


def _is_service_module(path: Path) -> bool:
    return path.name in SERVICE_MODULE_NAMES


def _functions(tree: ast.AST):
    return [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_one_selector_finds_the_customer_of_a_stripe_object():
    lookups = [f"{path.relative_to(ROOT)}:{fn.name}" for path, text in _source_files()
               for fn in _functions(ast.parse(text)) if fn.name.startswith(("customer_for_", "_customer_for", "_find_customer"))]
    assert lookups == ["billing_console/selectors.py:customer_for_stripe_object"]


def test_one_reader_for_invoice_to_subscription():
    readers = [f"{path.relative_to(ROOT)}:{fn.name}" for path, text in _source_files()
               for fn in _functions(ast.parse(text)) if "invoice_subscription" in fn.name and "metadata" not in fn.name]
    assert readers == ["billing_console/stripe/objects.py:invoice_subscription_id"]


def test_subscription_statuses_are_spelled_out_in_one_place():
    spelled = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, text in _source_files() if path.name != "statuses.py"
               for node in ast.walk(ast.parse(text))
               if isinstance(node, ast.Constant) and node.value in ("incomplete_expired", "past_due", "trialing", "unpaid")
               and f'parameter_name = "{node.value}"' not in text.splitlines()[node.lineno - 1]]
    assert spelled == []


def test_services_raise_the_service_error_not_value_or_validation_errors():
    raised = []
    for path, text in _source_files(services_only=True):
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Raise) and node.exc is not None:
                call = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                name = call.id if isinstance(call, ast.Name) else getattr(call, "attr", "")
                if name in ("ValueError", "ValidationError", "TypeError", "Exception"):
                    raised.append(f"{path.relative_to(ROOT)}:{node.lineno} raises {name}")
    assert raised == []


def test_every_error_a_service_raises_is_a_service_error():
    from django.apps import apps  # noqa: F401  (Django is set up by pytest-django)

    from billing_console.errors import ServiceError
    from billing_console.invoicing.ledger import LedgerImportError
    from billing_console.invoicing.reconciliation import ReconcileScopeError
    from billing_console.invoicing.services import InvoiceShapeError
    from billing_console.ops.backups import BackupError
    from billing_console.stripe.catch_up import CatchUpError
    from billing_console.stripe.checkout import CheckoutInputError, CheckoutStripeFailed, PlanNotAvailable
    from billing_console.stripe.gateway import StripeGatewayError
    from dunning.services import DunningError
    from licensing.services import LicenseError

    for error in (LedgerImportError, ReconcileScopeError, InvoiceShapeError, BackupError, CatchUpError,
                  CheckoutInputError, CheckoutStripeFailed, PlanNotAvailable, StripeGatewayError, DunningError,
                  LicenseError):
        assert issubclass(error, ServiceError), error


def test_no_fake_meta_classes_for_audit_targets():
    fakes = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, text in _source_files()
             for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ClassDef) and node.name == "_meta"]
    assert fakes == []


def _admin_actions():
    """(file, method node) for every @admin.action in the project."""
    for path, text in _source_files():
        if "admin" not in path.parts and path.name != "admin.py":
            continue
        for fn in _functions(ast.parse(text)):
            for decorator in fn.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Attribute) and target.attr == "action":
                    yield path, fn


# Actions that call one service for the whole selection (no per-row loop to share), or act on exactly one
# row through a form of their own (replace_account).
WHOLE_SELECTION_ACTIONS = {"replay", "mirror_again", "enforce_policies_now", "unlock", "replace_account"}


def test_every_per_row_admin_action_goes_through_the_helper():
    helpers = {"run_for_each", "_each", "_run"}
    bypassing = []
    for path, fn in _admin_actions():
        if fn.name in WHOLE_SELECTION_ACTIONS:
            continue
        called = {node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                  for node in ast.walk(fn) if isinstance(node, ast.Call)}
        if not called & helpers:
            bypassing.append(f"{path.relative_to(ROOT)}:{fn.name}")
        loops = [node for node in ast.walk(fn) if isinstance(node, (ast.For, ast.While))]
        if loops:
            bypassing.append(f"{path.relative_to(ROOT)}:{fn.name} loops itself")
    assert bypassing == []
    # and the local helpers are thin wrappers of the one helper
    for path, text in _source_files():
        for fn in _functions(ast.parse(text)):
            if fn.name in ("_each", "_run"):
                assert "run_for_each(" in ast.get_source_segment(text, fn), f"{path}:{fn.name}"


def test_admin_messages_use_correct_plurals():
    from billing_console.admin.base import counted

    assert (counted(1, "deployment"), counted(2, "deployment"), counted(0, "publish", "publishes")) == (
        "1 deployment", "2 deployments", "0 publishes")
    hedged = [f"{path.relative_to(ROOT)}" for path, text in _source_files()
              if ("admin" in path.parts or path.name == "admin.py") and "(s) " in text]
    assert hedged == []


def test_apis_answer_errors_through_the_one_shape():
    """Every JsonResponse that answers an error is built by error_body (or, for the licence API's
    published desktop contract, desktop_error_body), never from a literal dict."""
    literal = []
    for path, text in _source_files():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "JsonResponse" and node.args:
                body = node.args[0]
                if isinstance(body, ast.Dict) and any(isinstance(k, ast.Constant) and k.value in ("error", "code")
                                                      for k in body.keys):
                    literal.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert literal == []

