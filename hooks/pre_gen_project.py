"""Check every answer before cookiecutter writes a file (logic: pyspark_kernel.hooks)."""

import json
import sys

# Values arrive as data, never as code; the two paths come from local_extensions.py.
TEMPLATE_ROOT = json.loads(r'''{{ template_root | tojson }}''')
LAUNCH_DIR = json.loads(r'''{{ launch_dir | tojson }}''')
CONTEXT = json.loads(r'''{{ cookiecutter | tojson }}''')


def main():
    sys.path.insert(0, TEMPLATE_ROOT)
    from pyspark_kernel import hooks

    hooks.remove_rendered(__file__, TEMPLATE_ROOT)
    return hooks.pre_gen(CONTEXT, LAUNCH_DIR)


if __name__ == "__main__":
    raise SystemExit(main())
