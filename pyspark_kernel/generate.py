"""One kernel generated and installed whole: cookiecutter builds it in a staging directory beside
its place, then it moves into place (create, and upgrade from a kernel's recorded answers)."""

import logging
import os

from .errors import InputError

log = logging.getLogger(__name__)


def quiet_cookiecutter() -> None:
    """The hooks print the one-line ERROR; cookiecutter's own report of the failed hook is noise."""
    logging.getLogger("cookiecutter").addHandler(logging.NullHandler())
    logging.getLogger("cookiecutter").propagate = False


def generate_kernel(template: str, name: str, answers: dict, target: str, shareable: bool, force: bool) -> None:
    """Build the kernel ``name`` from ``answers`` and install it at ``target``; ``shareable``: every
    user may read it (0755/0644), else only its owner (0700/0600, or tighter)."""
    from cookiecutter.exceptions import CookiecutterException, FailedHookException
    from cookiecutter.main import cookiecutter

    from .install import make_private, make_shareable, move_into_place, staging_dir
    from .pack import keep_record

    with staging_dir(os.path.dirname(target)) as staging:
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
