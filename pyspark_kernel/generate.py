"""One kernel generated and installed whole: cookiecutter builds it in a staging directory beside
its place, then it moves into place (create, and upgrade from a kernel's recorded answers).

The template's hooks are two small scripts that call pyspark_kernel.hooks. Cookiecutter runs each
in a Python of its own, which imports the checks again (0.6 s of CPU and 0.5 s of a `create`):
when the template is this package's own and its hook scripts are the ones it ships, the same
functions run here instead, with the same context as data. A fork's edited hooks, or a template
whose pyspark_kernel is another copy, run as cookiecutter runs them.
"""

import contextlib
import hashlib
import json
import logging
import os

from .errors import InputError

log = logging.getLogger(__name__)


def quiet_cookiecutter() -> None:
    """The hooks print the one-line ERROR; cookiecutter's own report of the failed hook is noise."""
    logging.getLogger("cookiecutter").addHandler(logging.NullHandler())
    logging.getLogger("cookiecutter").propagate = False


# The hook scripts this package ships: each one's sha256 (tests/test_cli.py checks them), and the
# pyspark_kernel.hooks function it calls. A script that differs is a team's own: cookiecutter runs it.
OWN_HOOKS = {
    "pre_gen_project.py": ("8fe610f5d35c1e5debec7190daee35eb3a0ce63198ee59bc203df18907d0a730", "pre_gen"),
    "post_gen_project.py": ("abafd3aeaefcc73dac10d72afbf8f353c1212dfb7d997b7de3047933c9918d7c", "post_gen"),
}


def own_hook(template: str, script: str):
    """pyspark_kernel.hooks' function that the hook ``script`` of ``template`` would call, when
    both are this package's own; else None."""
    from . import hooks

    name = os.path.basename(script)
    # The script imports the template's own pyspark_kernel, or (a wheel's template has none) the
    # one installed beside cookiecutter, which is this one.
    beside = os.path.join(template, "pyspark_kernel")
    try:
        ours = not os.path.exists(beside) or os.path.samefile(beside, os.path.dirname(os.path.abspath(hooks.__file__)))
        if not ours or os.path.dirname(os.path.abspath(script)) != os.path.join(os.path.abspath(template), "hooks"):
            return None
        digest, function = OWN_HOOKS.get(name, (None, None))
        with open(script, "rb") as handle:
            if hashlib.sha256(handle.read()).hexdigest() != digest:
                return None
    except OSError:
        return None
    return getattr(hooks, function)


@contextlib.contextmanager
def own_hooks_in_process(template: str, launch_dir: str):
    """While cookiecutter runs ``template``: its own hooks run in this process (see the top)."""
    from cookiecutter import hooks as cookiecutter_hooks
    from cookiecutter.exceptions import FailedHookException

    run_script = cookiecutter_hooks.run_script_with_context

    def run(script_path, cwd, context):
        step = own_hook(template, str(script_path))
        if step is None:
            return run_script(script_path, cwd, context)
        # As the script gets it: the context through JSON, the kernel's directory as its working one.
        status = step(json.loads(json.dumps(context["cookiecutter"])), launch_dir, str(cwd))
        if status != 0:
            raise FailedHookException(f"Hook script failed (exit status: {status})")
        return None

    cookiecutter_hooks.run_script_with_context = run
    try:
        yield
    finally:
        cookiecutter_hooks.run_script_with_context = run_script


def generate_kernel(template: str, name: str, answers: dict, target: str, shareable: bool, force: bool) -> None:
    """Build the kernel ``name`` from ``answers`` and install it at ``target``; ``shareable``: every
    user may read it (0755/0644), else only its owner (0700/0600, or tighter)."""
    from cookiecutter.exceptions import CookiecutterException, FailedHookException
    from cookiecutter.main import cookiecutter

    from .install import make_private, make_shareable, move_into_place, staging_dir
    from .pack import keep_record

    with staging_dir(os.path.dirname(target)) as staging, own_hooks_in_process(template, os.getcwd()):
        try:
            built = cookiecutter(template, no_input=True, output_dir=staging, extra_context={"kernel_name": name, "_answers": answers})
        except FailedHookException:
            raise SystemExit(1) from None  # the hook has said what is wrong
        except CookiecutterException as error:
            raise InputError("kernels_template_path", f"cookiecutter failed: {' '.join(str(error).split())}", "fix the template, or pass -t with a working one") from None
        if force:
            keep_record(built, target)
        (make_shareable if shareable else make_private)(built)
        move_into_place(built, target, force)
        log.info("moved into place: %s", target)
