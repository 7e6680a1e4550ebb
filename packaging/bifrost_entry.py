"""Entry point of the frozen `bifrost` executable (PyInstaller runs this file as __main__).

It only exists because a frozen program must call ``multiprocessing.freeze_support()`` before
anything else: with the spawn/forkserver start methods each worker process is this same executable
re-run with ``--multiprocessing-fork`` arguments, and ``freeze_support`` is what turns that re-run
into the worker instead of a second CLI. The wheel's console script does not need it
(``python -m``/console scripts re-import by module), so it lives here and not in bifrost_cli.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()

    from bifrost_cli.main import main

    sys.exit(main())
